"""The error contract of DESIGN §3: JSON everywhere, never a traceback.

OAuth endpoints answer RFC 6749 bodies, FHIR endpoints OperationOutcome, the rest ``{"error": {"code","message"}}``.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from healthway.errors import (
    HealthwayError,
    InsufficientScope,
    InvalidToken,
    LegacyKeysDisabled,
    OAuthError,
    RateLimited,
    ServerBusy,
)

_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def oauth_error_response(exc: OAuthError) -> JSONResponse:
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    return JSONResponse(
        {"error": exc.code, "error_description": exc.message}, status_code=exc.status_code, headers=headers
    )


def rate_limit_headers(exc: RateLimited) -> dict[str, str]:
    return {
        "Retry-After": str(exc.retry_after),
        "X-RateLimit-Limit": str(exc.limit),
        "X-RateLimit-Remaining": str(exc.remaining),
        "X-RateLimit-Reset": str(exc.reset_at),
    }


def error_headers(exc: HealthwayError) -> dict[str, str]:
    """The headers an error answer carries: rate-limit figures, when to come back, or a bearer challenge."""
    if isinstance(exc, RateLimited):
        return rate_limit_headers(exc)
    if isinstance(exc, ServerBusy):
        return {"Retry-After": str(exc.retry_after)}
    return challenge_headers(exc)


def challenge_headers(exc: HealthwayError) -> dict[str, str]:
    """RFC 6750 §3 ``WWW-Authenticate`` for bearer-token refusals (and ``Deprecation`` for legacy ones)."""
    if isinstance(exc, InsufficientScope):
        return {"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{exc.scope}"'}
    if isinstance(exc, InvalidToken):
        headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        return headers | LegacyKeysDisabled.headers if isinstance(exc, LegacyKeysDisabled) else headers
    return {}


def render(exc: HealthwayError) -> JSONResponse:
    if isinstance(exc, OAuthError):
        return oauth_error_response(exc)
    return error_response(exc.status_code, exc.code, exc.message, error_headers(exc) or None)


async def _healthway_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HealthwayError)
    return render(exc)


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    return error_response(exc.status_code, _HTTP_CODES.get(exc.status_code, "error"), message, exc.headers)


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # Only where and what, never the offending input (it may be a secret).
    problems = [
        f"{'.'.join(str(p) for p in err.get('loc', ()) if p != 'body') or 'body'}: {err.get('msg', 'invalid')}"
        for err in exc.errors()[:5]
    ]
    return error_response(400, "invalid_request", "; ".join(problems) or "invalid request")


async def _unexpected(request: Request, _exc: Exception) -> Response:
    request_id = request.scope.get("state", {}).get("request_id")
    return JSONResponse(
        {"error": {"code": "internal_error", "message": "internal server error", "request_id": request_id}},
        status_code=500,
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(HealthwayError, _healthway_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
