"""Pure ASGI middleware: request id, structured access log and Prometheus metrics per route template."""

from __future__ import annotations

import time
import uuid

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("healthway.http")


class RequestMiddleware:
    def __init__(self, app: ASGIApp, *, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter(
            "healthway_http_requests", "HTTP requests", ["method", "route", "status"], registry=registry
        )
        self.latency = Histogram(
            "healthway_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                elapsed = time.perf_counter() - started
                # The route template, not the raw path: bounded label cardinality, and no IDs in metrics.
                route = route_template(scope)
                self.requests.labels(scope["method"], route, str(status)).inc()
                self.latency.labels(scope["method"], route).observe(elapsed)
                # The route template, never the raw path or query: those carry e-mails, patient and key IDs, secrets.
                log.info(
                    "request",
                    method=scope["method"],
                    route=route,
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                    client=(scope.get("client") or ("-",))[0],
                )


def route_template(scope: Scope) -> str:
    """The matched route's template (``/fhir/R4/{type}/{id}``), or ``unmatched``.

    Rebuilt from the path and its parameters, each of which fills one whole segment: routes of FastAPI's included
    routers know only their own part of the template, and plain Starlette routes leave none in the scope. Parameters
    are placed from the right, in template order, so a value equal to a literal segment stays unambiguous."""
    if "endpoint" not in scope:
        return "unmatched"
    segments = scope["path"].split("/")
    end = len(segments)
    for name, value in reversed(list(scope.get("path_params", {}).items())):
        end = next((i for i in range(end - 1, -1, -1) if segments[i] == str(value)), -1)
        if end < 0:
            return "unmatched"
        segments[end] = "{" + name + "}"
    return "/".join(segments)
