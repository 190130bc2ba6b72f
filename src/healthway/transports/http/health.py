"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from healthway.app import Healthway

router = APIRouter(include_in_schema=False)


@router.get("/healthz")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    hw: Healthway = request.app.state.healthway
    checks = {"database": await run_in_threadpool(hw.db.is_ready)}
    checks.update({listener.name: listener.is_up() for listener in hw.listeners})
    ready = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks}, status_code=200 if ready else 503
    )


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    hw: Healthway = request.app.state.healthway
    return Response(generate_latest(hw.metrics), media_type=CONTENT_TYPE_LATEST)
