"""The HTTP application: one FastAPI app whose lifespan also runs the other listeners and workers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI

from healthway import __version__
from healthway.app import Healthway
from healthway.transports.http import errors, health, home, intake, legacy_auth, oauth, openapi, platform, sync
from healthway.transports.http.limits import BodyLimitMiddleware, UploadSlots
from healthway.transports.http.middleware import RequestMiddleware

log = structlog.get_logger("healthway")


def create_app(hw: Healthway) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        started = []
        try:
            for listener in hw.listeners:
                await listener.start()
                started.append(listener)
                log.info("listener started", listener=listener.name)
            yield
        finally:
            for listener in reversed(started):
                await listener.stop()

    app = FastAPI(
        title="Healthway",
        version=__version__,
        description="Health data exchange gateway: Platform API, OAuth token endpoint and data intake.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.healthway = hw
    app.state.upload_slots = UploadSlots(hw.settings.http_max_large_uploads)
    errors.install(app)
    openapi.install(app)  # the lean Starlette routes below are described there, not by FastAPI
    app.include_router(health.router)
    app.include_router(home.router)
    app.include_router(platform.router)
    # The data endpoints are the hot path: first in the table, since matching walks it in order.
    app.router.routes[:0] = [*intake.routes, *legacy_auth.routes, *sync.routes]
    oauth.install(app, hw)  # puts the token endpoint first of all
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(RequestMiddleware, registry=hw.metrics)  # outermost: it also sees and logs the 413s
    return app
