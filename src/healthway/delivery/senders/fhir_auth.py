"""OAuth 2.0 ``client_credentials`` access tokens for FHIR destinations (SMART Backend Services and the like).

A ``fhir`` destination whose config has ``token_url`` and ``client_id`` presents a bearer token to its FHIR server.
The token comes from its token endpoint, the client authenticating there with one of ``client_secret_basic``,
``client_secret_post`` or ``private_key_jwt`` (RS384 or ES384, as SMART Backend Services asks).

authlib encodes the client authentication (``ClientAuth``, ``PrivateKeyJWT``). The token request itself goes through
the sender's httpx client: authlib's own httpx integration is built on httpx2, a second HTTP stack with its own
exceptions and transports, and one stack keeps pooling, timeouts and error handling in one place.

Nothing here puts a secret, an assertion or a token in an exception message: those messages become attempt details.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
from authlib.oauth2.auth import ClientAuth  # type: ignore[import-untyped]
from authlib.oauth2.rfc7523 import PrivateKeyJWT  # type: ignore[import-untyped]
from joserfc.jwk import ECKey, RSAKey

from healthway.delivery.guarded import AnswerTooLarge, read_capped
from healthway.domain.messages import ContentType
from healthway.net.outbound import AddressRefused

ASSERTION_LIFETIME = 300  # SMART Backend Services: a client assertion expires at most 5 minutes after it is made
DEFAULT_LIFETIME = 300.0  # a token answer without expires_in: assume a short life (a 401 refetches in any case)
EARLY = 30.0  # refetch up to this long before expiry, so that a token does not run out while a request is in flight
FAILURE_HOLD = 5.0  # after a failed fetch, requests waiting for the same token share the failure for this long
MAX_TOKEN_ANSWER = 64 * 1024  # a token answer is a few hundred bytes
SIGNING_KEYS: dict[str, type[RSAKey] | type[ECKey]] = {"RS384": RSAKey, "ES384": ECKey}
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.-]{1,60}")  # an RFC 6749 error code; anything else is not repeated


class TokenUnavailable(Exception):
    """No access token: the token endpoint was unreachable, did not answer in time, or refused the client.
    The message is a short detail without secrets."""


@dataclass(frozen=True)
class ClientCredentials:
    """What a token request needs, read from a fhir destination's stored config."""

    token_url: str
    client_id: str
    method: str  # client_secret_basic | client_secret_post | private_key_jwt
    secret: str = field(repr=False)  # the client secret, or the PEM private key for private_key_jwt
    alg: str = "RS384"
    kid: str | None = None
    scope: str | None = None

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> ClientCredentials | None:
        """The credentials of a destination; None when it has none (its FHIR server takes requests as they are)."""
        if not config.get("token_url") or not config.get("client_id"):
            return None
        key = config.get("private_key")
        return cls(
            token_url=str(config["token_url"]),
            client_id=str(config["client_id"]),
            method="private_key_jwt" if key else str(config.get("token_auth_method") or "client_secret_basic"),
            secret=str(key or config.get("client_secret") or ""),
            alg=str(config.get("alg") or "RS384"),
            kid=config.get("kid"),
            scope=config.get("scope"),
        )

    def cache_key(self, destination_id: str) -> str:
        """Differs when any field differs, so a changed config gets its own token; a digest, so that the cache
        does not hold the secret a second time."""
        digest = hashlib.sha256(orjson.dumps(dataclasses.astuple(self))).hexdigest()
        return f"{destination_id}:{digest}"

    def token_request(self) -> tuple[str, dict[str, str], str]:
        """(url, headers, form body) of a client_credentials token request, client authentication included."""
        form = {"grant_type": "client_credentials"} | ({"scope": self.scope} if self.scope else {})
        headers = {"Accept": ContentType.JSON, "Content-Type": ContentType.FORM}
        auth = ClientAuth(self.client_id, *self._client_auth())
        url, headers, body = auth.prepare("POST", self.token_url, headers, urlencode(form))
        return str(url), dict(headers), str(body)

    def _client_auth(self) -> tuple[Any, Any]:
        """(client secret or signing key, authlib auth method) for ClientAuth."""
        if self.method != "private_key_jwt":
            return self.secret, self.method
        # A new PrivateKeyJWT per request: authlib adds the jti to the claims dict it is given (a new one each time).
        assertion = PrivateKeyJWT(
            self.token_url,  # the assertion's aud
            claims={"exp": int(time.time()) + ASSERTION_LIFETIME},
            headers={"kid": self.kid} if self.kid else None,
            alg=self.alg,
        )
        return SIGNING_KEYS[self.alg].import_key(self.secret), assertion


@dataclass
class _Cached:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    token: str | None = None
    expires_at: float = 0.0
    failure: str | None = None
    failed_until: float = 0.0


class TokenCache:
    """Access tokens per destination and credentials. Concurrent requests wait for one fetch and share its token
    (or its failure); a token is reused until shortly before its ``expires_in`` runs out."""

    def __init__(self, client: httpx.AsyncClient, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._clock = clock
        self._entries: dict[str, _Cached] = {}

    async def token(self, destination_id: str, credentials: ClientCredentials, *, refused: str | None = None) -> str:
        """A usable access token, or TokenUnavailable. ``refused`` is a token the FHIR server has just answered 401
        to: it is never returned again, and however many requests saw that 401, one new token is fetched."""
        entry = self._entries.setdefault(credentials.cache_key(destination_id), _Cached())
        async with entry.lock:
            now = self._clock()
            if entry.token is not None and entry.token != refused and now < entry.expires_at:
                return entry.token
            if entry.failure is not None and now < entry.failed_until:
                raise TokenUnavailable(entry.failure)
            try:
                entry.token, lifetime = await self._fetch(credentials)
            except TokenUnavailable as exc:
                entry.token, entry.failure, entry.failed_until = None, str(exc), now + FAILURE_HOLD
                raise
            entry.failure, entry.expires_at = None, now + lifetime - min(EARLY, lifetime / 10)
            return entry.token

    async def _fetch(self, credentials: ClientCredentials) -> tuple[str, float]:
        url, headers, body = credentials.token_request()
        try:
            request = self._client.build_request("POST", url, content=body, headers=headers)
            response = await self._client.send(request, stream=True)
            try:
                content = await read_capped(response, MAX_TOKEN_ANSWER)
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            raise TokenUnavailable("the FHIR server's token endpoint did not answer in time") from None
        except (AddressRefused, AnswerTooLarge) as exc:
            raise TokenUnavailable(f"the FHIR server's token endpoint: {exc}") from None
        except httpx.HTTPError as exc:
            raise TokenUnavailable(f"the FHIR server's token endpoint is unreachable: {type(exc).__name__}") from None
        return parse_token_response(response.status_code, content)


def parse_token_response(status_code: int, content: bytes) -> tuple[str, float]:
    """(access token, lifetime in seconds) from a token endpoint's answer (RFC 6749 §5), or TokenUnavailable."""
    try:
        answer = orjson.loads(content)
    except orjson.JSONDecodeError:
        answer = None
    if isinstance(answer, dict) and "error" in answer:
        code = str(answer["error"])
        code = code if _ERROR_CODE.fullmatch(code) else "unreadable error"
        raise TokenUnavailable(f"the FHIR server's token endpoint refused the client credentials ({code})")
    if status_code != 200 or not isinstance(answer, dict):
        raise TokenUnavailable(f"the FHIR server's token endpoint answered HTTP {status_code} without a token")
    token, token_type = answer.get("access_token"), str(answer.get("token_type", "bearer"))
    if not isinstance(token, str) or not token or token_type.lower() != "bearer":
        raise TokenUnavailable("the FHIR server's token endpoint gave no bearer access token")
    return token, _lifetime(answer.get("expires_in"))


def _lifetime(expires_in: object) -> float:
    # Some servers send expires_in as a string ("3599"); a missing or odd value means the conservative default.
    try:
        seconds = float(str(expires_in))
    except ValueError:
        return DEFAULT_LIFETIME
    return seconds if 0 < seconds < 366 * 86400 else DEFAULT_LIFETIME
