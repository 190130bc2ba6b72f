"""Liveness, readiness and metrics.

``/metrics`` on the public port: 404 when ``HEALTHWAY_METRICS_ADDRESS`` serves them elsewhere; otherwise only for
an organization owner's personal access token (they count every organization's traffic).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from healthway.errors import NotFound, PermissionDenied
from healthway.runtime import Healthway
from healthway.services import authz
from healthway.transports.http.platform.deps import current_actor

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    hw: Healthway = request.app.state.healthway
    checks = {"database": await run_in_threadpool(hw.db.is_ready)}
    checks.update({part.name: part.is_up() for part in hw.parts})
    ready = all(checks.values())
    body: dict[str, object] = {"status": "ready" if ready else "not_ready", "checks": checks}
    if warnings := hw.db.permission_warnings():  # a warning, not a failure: the data is there and served
        body["warnings"] = warnings
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics")
def metrics(request: Request) -> Response:
    hw: Healthway = request.app.state.healthway
    if hw.settings.metrics_address:
        raise NotFound("Not Found")
    actor = current_actor(request)
    with hw.db.read_session() as session:
        if not authz.owns_an_organization(session, actor):
            raise PermissionDenied("only an organization owner may read metrics")
    return Response(generate_latest(hw.metrics), media_type=CONTENT_TYPE_LATEST)
