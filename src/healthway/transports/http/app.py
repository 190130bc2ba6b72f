"""The HTTP application: one FastAPI app; the node's parts run beside it (``server.run``), not in its lifespan."""

from __future__ import annotations

import structlog
from fastapi import FastAPI

from healthway import __version__
from healthway.runtime import Healthway
from healthway.transports.http import errors, health, home, intake, legacy_auth, oauth, openapi, platform, sync
from healthway.transports.http.limits import BodyLimitMiddleware, UploadSlots
from healthway.transports.http.middleware import RequestMiddleware

log = structlog.get_logger("healthway")


def create_app(hw: Healthway) -> FastAPI:
    """The routes of ``hw``; ``server.run`` serves it and runs ``hw``'s parts beside it."""
    app = FastAPI(
        title="Healthway",
        version=__version__,
        description="Health data exchange gateway: Platform API, OAuth token endpoint and data intake.",
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
    oauth.install(app)  # puts the token endpoint first of all
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(RequestMiddleware, registry=hw.metrics)  # outermost: it also sees and logs the 413s
    return app
