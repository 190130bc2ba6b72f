"""OAuth endpoints (DESIGN §3): ``/v2/auth/token``, ``/v2/auth/revoke``, ``/v2/auth/introspect`` and discovery.

Plain Starlette routes (no FastAPI dependency resolution or validation: the token endpoint is hot). The wire
rules live here: form body only, capped at 64 KiB before parsing, each parameter at most once; answers are
orjson with ``Cache-Control: no-store``. Errors are ``OAuthError``s, rendered as RFC 6749 bodies by
``transports.http.errors``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from healthway.domain import jwk, scopes
from healthway.domain.messages import ContentType
from healthway.errors import InvalidClient, OAuthInvalidRequest, RateLimited
from healthway.runtime import Healthway
from healthway.services.oauth_server import OAuthServer, claimed_client
from healthway.transports.http.errors import rate_limit_headers

MAX_FORM_BYTES = 64 * 1024
MAX_FIELDS = 20
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def json_response(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers=headers, media_type=ContentType.JSON)


async def read_form(request: Request) -> dict[str, str]:
    """The urlencoded body as a dict; 400 for another content type, a body over 64 KiB, a repeated parameter."""
    if ContentType.of(request.headers.get("content-type", "")) is not ContentType.FORM:
        raise OAuthInvalidRequest(f"the request body must be {ContentType.FORM}")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_FORM_BYTES):
        raise OAuthInvalidRequest("the request body is too large")
    # With a Content-Length the server delivers exactly that many bytes; without one, count while reading.
    body = await request.body() if declared is not None else await _read_capped(request)
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise OAuthInvalidRequest("the request body is not a valid form") from None
    form = dict(pairs)
    if len(form) != len(pairs):  # RFC 6749 §3.2: parameters must not be included more than once
        raise OAuthInvalidRequest("a parameter is repeated")
    return form


async def _read_capped(request: Request) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise OAuthInvalidRequest("the request body is too large")
    return bytes(body)


def _address(request: Request) -> str | None:
    return request.client.host if request.client else None


def _server(request: Request) -> OAuthServer:
    hw: Healthway = request.app.state.healthway
    return hw.oauth


async def token(request: Request) -> Response:
    """Failed client authentications are counted per (claimed client, address) and per address; only a failure
    is ever refused for them (429), never a request whose assertion verifies (``BruteForceGuard``)."""
    hw: Healthway = request.app.state.healthway
    form = await read_form(request)
    try:
        body = await _server(request).token(form, address=_address(request))
    except InvalidClient:
        try:
            await hw.guard.failed(key=claimed_client(form), address=_address(request) or "unknown")
        except RateLimited as exc:
            body = {"error": "rate_limited", "error_description": exc.message}
            return json_response(body, 429, headers=NO_STORE | rate_limit_headers(exc))
        raise
    return json_response(body, headers=NO_STORE)


async def revoke(request: Request) -> Response:
    form = await read_form(request)
    await _server(request).revoke(form, address=_address(request))
    return Response(b"", 200, headers=NO_STORE)


async def introspect(request: Request) -> Response:
    form = await read_form(request)
    return json_response(await _server(request).introspect(form, address=_address(request)), headers=NO_STORE)


def discovery(hw: Healthway) -> dict[str, Any]:
    base = hw.settings.public_url.rstrip("/")
    auth = {
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(jwk.ALGORITHMS),
    }
    return {
        "issuer": base,
        "token_endpoint": hw.settings.token_url,
        **auth,
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": scopes.SCOPES_SUPPORTED,
        "response_types_supported": ["token"],
        "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
        "revocation_endpoint": f"{base}/v2/auth/revoke",
        "revocation_endpoint_auth_methods_supported": ["private_key_jwt"],
        "introspection_endpoint": f"{base}/v2/auth/introspect",
        "introspection_endpoint_auth_methods_supported": ["private_key_jwt"],
    }


async def well_known(request: Request) -> Response:
    hw: Healthway = request.app.state.healthway
    return json_response(discovery(hw), headers={"Cache-Control": "public, max-age=3600"})


routes = [
    Route("/v2/auth/token", token, methods=["POST"]),
    Route("/v2/auth/revoke", revoke, methods=["POST"]),
    Route("/v2/auth/introspect", introspect, methods=["POST"]),
    Route("/.well-known/smart-configuration", well_known, methods=["GET"]),
    Route("/.well-known/oauth-authorization-server", well_known, methods=["GET"]),
]


def install(app: Starlette) -> None:
    """Mount the routes; the token endpoint first, as the hottest route (matching walks the table in order)."""
    app.router.routes[:0] = routes
