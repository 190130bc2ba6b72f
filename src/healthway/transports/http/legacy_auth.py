"""Legacy authentication (deprecated): ``POST /auth/authenticate`` and ``POST /auth/refreshToken``, Redox's shapes.

Every answer carries ``Deprecation: true``; while the organization has legacy keys turned off, right credentials
get 401 ``legacy_keys_disabled`` with a message saying so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from healthway.domain.messages import check_text
from healthway.errors import HealthwayError, InvalidRequest, LegacyKeysDisabled, Unauthenticated
from healthway.runtime import Healthway
from healthway.services import legacy_keys
from healthway.services.legacy_keys import TokenPair
from healthway.transports.http.data_endpoints import json_response, parse_json, read_body
from healthway.transports.http.errors import render

MAX_BODY = 64 * 1024


def _deprecated(response: Response, hw: Healthway) -> Response:
    response.headers["Deprecation"] = "true"
    response.headers["Link"] = f'<{hw.settings.token_url}>; rel="successor-version"'
    return response


def _fields(body: Any, *names: str) -> list[str]:
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    values = [body.get(name) for name in names]
    if not all(isinstance(v, str) and v for v in values):
        raise InvalidRequest(f"{' and '.join(names)} are required strings")
    return [check_text(v, n) for v, n in zip(values, names, strict=True)]  # type: ignore[arg-type]


def _pair_body(pair: TokenPair) -> dict[str, str]:
    expires = pair.expires_at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{pair.expires_at.microsecond // 1000:03d}Z"
    return {"accessToken": pair.access_token, "expires": expires, "refreshToken": pair.refresh_token}


Exchange = Callable[[Healthway, str, str], TokenPair]  # (app, apiKey, secret or refresh token): one service call


async def _handle(request: Request, names: tuple[str, str], exchange: Exchange) -> Response:
    hw: Healthway = request.app.state.healthway
    address = request.client.host if request.client else "unknown"
    try:
        api_key, credential = _fields(parse_json(await read_body(request, MAX_BODY)), *names)
        try:
            pair = await run_in_threadpool(exchange, hw, api_key, credential)
        except LegacyKeysDisabled:
            raise  # the credentials were right
        except Unauthenticated:
            # Counted per (apiKey, address): a right secret is never refused for failures (BruteForceGuard).
            await hw.guard.failed(key=api_key[:64], address=address)
            raise
    except HealthwayError as exc:
        return _deprecated(render(exc), hw)
    return _deprecated(json_response(_pair_body(pair), 200), hw)


async def authenticate(request: Request) -> Response:
    return await _handle(
        request,
        ("apiKey", "secret"),
        lambda hw, key, secret: legacy_keys.exchange_secret(hw.db, api_key=key, secret=secret, now=hw.clock()),
    )


async def refresh_token(request: Request) -> Response:
    return await _handle(
        request,
        ("apiKey", "refreshToken"),
        lambda hw, key, token: legacy_keys.exchange_refresh_token(
            hw.db, api_key=key, refresh_token=token, now=hw.clock()
        ),
    )


routes = [
    Route("/auth/authenticate", authenticate, methods=["POST"]),
    Route("/auth/refreshToken", refresh_token, methods=["POST"]),
]
