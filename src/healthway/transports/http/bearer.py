"""Bearer authentication for every data endpoint (``/endpoint``, ``/fhir/R4/...``), in one call."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from healthway.domain.messages import check_text
from healthway.errors import InvalidRequest, InvalidToken
from healthway.runtime import Healthway
from healthway.services import access_tokens
from healthway.services.access_tokens import Grant, SendingSource

SOURCE_HEADERS = ("healthway-source-id", "redox-source-id")  # the second is Redox's name, accepted as an alias


@dataclass(frozen=True)
class Caller:
    grant: Grant
    source: SendingSource


def bearer_token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("a bearer access token is required")
    return token.strip()


def authenticate(hw: Healthway, reader: access_tokens.Reader, request: Request) -> Caller:
    """The authenticated grant and the source this request sends as. 401 / 400 / 403 as DESIGN §3 says."""
    grant = access_tokens.authenticate(reader, bearer_token(request), now=hw.clock())
    if grant is None:
        raise InvalidToken("the access token is invalid, expired or revoked")
    return Caller(grant, access_tokens.select_source(reader, grant, requested_source(request)))


def requested_source(request: Request) -> str | None:
    """The source header's value. Both spellings naming different sources is a mistake to point out, not a choice
    to make for the caller (400)."""
    named = {check_text(request.headers[h], h).strip() for h in SOURCE_HEADERS if h in request.headers}
    if len(named) > 1:
        raise InvalidRequest("Healthway-Source-Id and Redox-Source-Id name different sources: send one of them")
    return next(iter(named), None)
