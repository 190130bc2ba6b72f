"""Synchronous requests: Data Model ``...Query`` events and the FHIR read/search proxy (DESIGN §3).

The destination's answer is returned as is (200 for a query that succeeded), 502 when it failed, 504 when it
did not answer within HEALTHWAY_REQUEST_TIMEOUT. Each request is logged with its answer.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from healthway.domain import scopes
from healthway.domain.messages import ContentType, DataModelMeta
from healthway.domain.routing import MessageFacts
from healthway.domain.sync_requests import Answer
from healthway.domain.sync_requests import Route as SyncRoute
from healthway.errors import HealthwayError, InvalidRequest
from healthway.runtime import Healthway
from healthway.services import sync_requests
from healthway.services.intake import Submission
from healthway.transports.http import data_endpoints
from healthway.transports.http.bearer import Caller

RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")
RESOURCE_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")  # FHIR's id datatype


def _exchange(
    hw: Healthway, route: SyncRoute, sub: Submission, call: Callable[[], Awaitable[Answer]]
) -> Awaitable[Answer]:
    """``sync_requests.exchange`` with this app's request timeout, clock and writer."""
    return sync_requests.exchange(
        call,
        route=route,
        submission=sub,
        within=hw.settings.request_timeout,
        clock=hw.clock,
        submit=hw.intake.commit,
    )


async def data_model_query(
    hw: Healthway, caller: Caller, request: Request, body: bytes, meta: DataModelMeta
) -> Response:
    """A Data Model ``...Query`` goes to the single matching webhook destination; its answer is the response."""
    facts = MessageFacts(meta.data_model, meta.event_type, None)
    route = await sync_requests.find_route(
        hw.db, source_id=caller.source.id, facts=facts, kinds=("webhook",), ids=meta.destination_ids
    )
    sub = data_endpoints.submission(
        hw,
        caller,
        request,
        body,
        content_type=ContentType.JSON,
        data_model=meta.data_model,
        event_type=meta.event_type,
        test=meta.test,
        meta=meta.meta,
    )
    answer = await _exchange(
        hw,
        route,
        sub,
        lambda: hw.forwarder.query(
            route, source_id=caller.source.id, log_id=sub.log_id, content_type=ContentType.JSON, body=body
        ),
    )
    return Response(answer.body, status_code=200, media_type=answer.content_type or ContentType.JSON)


async def fhir_read(request: Request) -> Response:
    """``GET /fhir/R4/{type}[/{id}]``: proxied to the source's FHIR destination; errors are OperationOutcomes."""
    try:
        hw, caller, _ = await data_endpoints.accept(request)
        resource_type, resource_id = request.path_params["type"], request.path_params.get("id")
        if not RESOURCE_TYPE.fullmatch(resource_type) or (resource_id and not RESOURCE_ID.fullmatch(resource_id)):
            raise InvalidRequest("not a FHIR resource type or id")
        caller.grant.require(scopes.for_fhir_read(resource_type, search=resource_id is None))
        path = f"{resource_type}/{resource_id}" if resource_id else resource_type
        route = await sync_requests.find_route(hw.db, source_id=caller.source.id, facts=None, kinds=("fhir",))
        params = dict(request.query_params)
        line = f"GET {path}" + (f"?{request.url.query}" if request.url.query else "")
        sub = data_endpoints.submission(
            hw,
            caller,
            request,
            line.encode(),
            content_type=ContentType.TEXT,
            data_model="FHIR",
            event_type=f"{resource_type}.{'read' if resource_id else 'search'}",
        )
        answer = await _exchange(
            hw, route, sub, lambda: hw.forwarder.fhir(route, method="GET", path=path, params=params)
        )
    except HealthwayError as exc:
        return data_endpoints.fhir_error(exc)
    media_type = answer.content_type or ContentType.FHIR_JSON
    return Response(answer.body, status_code=answer.status_code, media_type=media_type)


routes = [
    Route("/fhir/R4/{type}", fhir_read, methods=["GET"]),
    Route("/fhir/R4/{type}/{id}", fhir_read, methods=["GET"]),
]
