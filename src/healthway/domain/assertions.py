"""Client assertions (RFC 7523 ``private_key_jwt``, SMART Backend Services): every check, in order.

1. ``parse``: a compact JWS of three base64url segments, each JSON object without duplicate members; size capped.
   It yields the unverified ``iss`` only so the caller can find the client and its pinned algorithm.
2. ``check_header``: ``alg`` equal to the key's pinned algorithm (so never ``none``, never HMAC), ``typ`` = ``JWT``,
   ``kid`` present, ``jku`` only when byte-equal to the registered JWKS URL. ``jwk``/``x5u``/``x5c`` are never
   used as key sources: the key always comes from what was registered.
3. ``verify_signature``: joserfc, with an allow-list of exactly the pinned algorithm.
4. ``check_claims``: ``iss`` = ``sub`` = client_id, ``aud`` exactly the token URL, ``exp`` ≤ now + 300 s and in the
   future, ``iat``/``nbf`` at most 10 s ahead, ``jti`` present. Replay of the ``jti`` is the caller's (stored) check.

Every failure raises ``InvalidClient`` with a fixed description: nothing of the assertion is echoed.
"""

from __future__ import annotations

import binascii
import json
import math
import re
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError, SecurityWarning

from healthway.domain.jwk import MAX_KID_LENGTH, PublicKey
from healthway.errors import InvalidClient

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LENGTH = 8 * 1024  # a real assertion is well under 2 kB
MAX_LIFETIME = 300  # exp may be at most this far ahead (SMART: "no more than five minutes in the future")
FUTURE_LEEWAY = 10  # iat/nbf may be this far ahead (clock skew)
MAX_JTI_LENGTH = 255
_SEGMENT = re.compile(rb"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Unverified:
    """A structurally valid assertion, not yet trusted."""

    raw: bytes
    header: dict[str, Any]
    claims: dict[str, Any]

    @property
    def issuer(self) -> str:
        iss = self.claims.get("iss")
        if not isinstance(iss, str) or not 0 < len(iss) <= 64:
            raise InvalidClient("the assertion has no valid iss claim")
        return iss


@dataclass(frozen=True)
class Verified:
    client_id: str
    jti: str
    expires_at: float  # the assertion's exp, until which its jti is remembered
    verified_at: float  # the time the claims were checked against: a replay is judged at this time too


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member")
    return result


def _reject_constant(_name: str) -> None:
    raise ValueError("NaN and Infinity are not JSON")


def _json_segment(segment: bytes) -> dict[str, Any]:
    if not _SEGMENT.fullmatch(segment):
        raise ValueError("not base64url")
    data = binascii.a2b_base64(segment.replace(b"-", b"+").replace(b"_", b"/") + b"=" * (-len(segment) % 4))
    value = json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    if not isinstance(value, dict):
        raise TypeError("not a JSON object")
    return value


def parse(assertion: str) -> Unverified:
    if len(assertion) > MAX_ASSERTION_LENGTH:
        raise InvalidClient("the client assertion is too large")
    raw = assertion.encode("ascii", "replace")
    parts = raw.split(b".")
    if len(parts) != 3:  # a JWE has five parts: encrypted assertions are not accepted
        raise InvalidClient("the client assertion must be a signed JWT (compact JWS)")
    if not _SEGMENT.fullmatch(parts[2]):
        raise InvalidClient("the client assertion has no valid signature")
    try:
        header, claims = _json_segment(parts[0]), _json_segment(parts[1])
    except (ValueError, TypeError):
        raise InvalidClient("the client assertion is not a well-formed JWT") from None
    return Unverified(raw, header, claims)


def check_header(header: dict[str, Any], *, alg: str, jwks_url: str | None) -> str:
    """The ``kid`` to look the key up with, after the header checks of the module docstring."""
    if header.get("alg") != alg:  # exact pin: rules out "none", HMAC with a public key, and alg downgrades
        raise InvalidClient("the assertion's alg is not the algorithm registered for this client")
    kid = header.get("kid")
    if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_LENGTH or not kid.isprintable():
        raise InvalidClient("the assertion header needs the kid of a registered key")
    if header.get("typ") != "JWT":
        raise InvalidClient("the assertion header's typ must be JWT")
    if "jku" in header and (jwks_url is None or header["jku"] != jwks_url):
        raise InvalidClient("the assertion's jku is not the JWKS URL registered for this client")
    return kid


@lru_cache(maxsize=16)
def _registry(alg: str) -> jws.JWSRegistry:
    # Only the pinned algorithm is allowed. Header members beyond the registry are tolerated (they are never used).
    return jws.JWSRegistry(algorithms=[alg], strict_check_header=False)


def verify_signature(assertion: Unverified, key: PublicKey, alg: str) -> None:
    """The signature over header and payload, checked by joserfc with the one allowed algorithm and key."""
    try:
        if alg == "EdDSA":
            # joserfc warns that RFC 9864 deprecates the name "EdDSA" (for "Ed25519"); DESIGN §1 keeps it.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SecurityWarning)
                jws.deserialize_compact(assertion.raw, key, algorithms=[alg], registry=_registry(alg))
        else:
            jws.deserialize_compact(assertion.raw, key, algorithms=[alg], registry=_registry(alg))
    except (JoseError, ValueError, TypeError):
        raise InvalidClient("the client assertion's signature is invalid") from None


def _numeric(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidClient(f"the assertion's {name} claim must be a number of seconds")
    return float(value)


def _check_times(claims: dict[str, Any], now: float) -> float:
    exp = _numeric(claims, "exp")
    if exp is None:
        raise InvalidClient("the assertion has no exp claim")
    if exp <= now:
        raise InvalidClient("the client assertion has expired")
    if exp > now + MAX_LIFETIME:
        raise InvalidClient(
            f"the assertion's exp is more than {MAX_LIFETIME} seconds ahead (received: {exp - now:.0f} s ahead; SMART "
            "Backend Services allows 5 minutes at most, so set the client's assertion lifetime below that)"
        )
    for name in ("iat", "nbf"):
        moment = _numeric(claims, name)
        if moment is not None and moment > now + FUTURE_LEEWAY:
            raise InvalidClient(f"the assertion's {name} is in the future")
    return exp


def check_claims(claims: dict[str, Any], *, client_id: str, audience: str, now: float) -> Verified:
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise InvalidClient("the assertion's iss and sub must both be the client_id")
    aud = claims.get("aud")
    # A string, or an array of exactly that one value: an assertion meant for several audiences could be
    # replayed by any of them.
    if aud not in (audience, [audience]):
        raise InvalidClient("the assertion's aud must be this server's token endpoint URL")
    exp = _check_times(claims, now)
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH:
        raise InvalidClient(f"the assertion needs a jti of 1 to {MAX_JTI_LENGTH} characters")
    return Verified(client_id, jti, exp, now)
