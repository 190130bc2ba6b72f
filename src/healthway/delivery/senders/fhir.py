"""FHIR destinations: a FHIR server base URL, used for synchronous queries (``/fhir/R4/...`` and ``Query`` event
types) and for delivering FHIR content.

``request`` forwards one query and returns the server's answer as is; ``send`` delivers a stored message:
a message Bundle to ``$process-message``, another Bundle to the base (batch/transaction), a resource to its type.
A destination with OAuth client credentials sends a bearer token (fhir_auth); a 401 gets one retry with a new token.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx
import orjson

from healthway.delivery.guarded import AnswerTooLarge, guarded_client, read_capped
from healthway.delivery.senders import SEND_TIMEOUT, Message, Target
from healthway.delivery.senders.fhir_auth import ClientCredentials, TokenCache, TokenUnavailable
from healthway.domain.delivery_states import AttemptOutcome
from healthway.domain.messages import ContentType
from healthway.domain.retry import AttemptResult
from healthway.net.outbound import AddressRefused, OutboundGuard

MAX_ANSWER = 40 * 2**20  # default cap on an answer's body (the Forwarder passes HEALTHWAY_MAX_MESSAGE_BYTES)


@dataclass(frozen=True)
class FhirResponse:
    status_code: int
    content_type: str
    body: bytes


class DestinationUnavailable(Exception):
    """The FHIR server could not be reached or did not answer in time (the caller answers 502 or 504)."""

    def __init__(self, message: str, *, timed_out: bool) -> None:
        super().__init__(message)
        self.timed_out = timed_out


def post_path(payload: bytes) -> str:
    """Where a FHIR resource is POSTed, relative to the base URL."""
    try:
        resource = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return ""
    if not isinstance(resource, dict):
        return ""
    kind = str(resource.get("resourceType", ""))
    if kind == "Bundle":
        return "$process-message" if resource.get("type") == "message" else ""
    return kind if kind.isalnum() else ""


class FhirSender:
    def __init__(
        self,
        *,
        guard: OutboundGuard,
        timeout: float = SEND_TIMEOUT,
        max_answer_bytes: int = MAX_ANSWER,
        clock: Callable[[], float] = time.monotonic,  # when cached access tokens expire
    ) -> None:
        self._client = guarded_client(guard, timeout=timeout)
        self._max_answer = max_answer_bytes
        self._tokens = TokenCache(self._client, clock=clock)

    @staticmethod
    def _url(target: Target, path: str) -> str:
        return f"{str(target.config['url']).rstrip('/')}/{path.lstrip('/')}"

    async def request(
        self,
        target: Target,
        *,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (httpx's own per-request timeout, not a cancel scope)
    ) -> FhirResponse:
        """Forward one FHIR interaction; raises DestinationUnavailable when there is no answer or no access token."""
        fhir_json = ContentType.FHIR_JSON
        headers = {"accept": fhir_json} | ({"content-type": fhir_json} if body is not None else {})
        request = self._client.build_request(
            method,
            self._url(target, path),
            params=params,
            content=body,
            headers=headers,
            timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )
        credentials = ClientCredentials.of(target.config)
        if credentials is None:
            return await self._exchange(request)
        token = await self._token(target, credentials)
        answer = await self._exchange(request, token)
        if answer.status_code == 401:  # revoked or expired early: the server did nothing, so one retry is safe
            answer = await self._exchange(request, await self._token(target, credentials, refused=token))
        return answer

    async def _token(self, target: Target, credentials: ClientCredentials, *, refused: str | None = None) -> str:
        try:
            return await self._tokens.token(target.id, credentials, refused=refused)
        except TokenUnavailable as exc:  # never a timeout for the caller: the FHIR server itself was not asked
            raise DestinationUnavailable(str(exc), timed_out=False) from None

    async def _exchange(self, request: httpx.Request, token: str | None = None) -> FhirResponse:
        if token is not None:
            request.headers["authorization"] = f"Bearer {token}"
        try:
            response = await self._client.send(request, stream=True)  # streamed: the body is read up to the cap
            try:
                body = await read_capped(response, self._max_answer)
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            raise DestinationUnavailable("the FHIR server did not answer in time", timed_out=True) from None
        except (AddressRefused, AnswerTooLarge) as exc:
            raise DestinationUnavailable(str(exc), timed_out=False) from None
        except httpx.HTTPError as exc:
            reason = f"the FHIR server is unreachable: {type(exc).__name__}"
            raise DestinationUnavailable(reason, timed_out=False) from None
        return FhirResponse(response.status_code, response.headers.get("content-type", ContentType.FHIR_JSON), body)

    async def send(self, target: Target, message: Message) -> AttemptResult:
        try:
            answer = await self.request(target, method="POST", path=post_path(message.payload), body=message.payload)
        except DestinationUnavailable as exc:
            return AttemptResult.retry(str(exc))
        code = str(answer.status_code)
        if 200 <= answer.status_code < 300:
            return AttemptResult(AttemptOutcome.DELIVERED, code, f"HTTP {code}")
        if answer.status_code in (400, 422):  # the server understood and refused this content: retrying won't help
            return AttemptResult(AttemptOutcome.REJECTED, code, f"HTTP {code}")
        return AttemptResult.retry(f"HTTP {code}", code)

    async def aclose(self) -> None:
        await self._client.aclose()
