"""The data endpoints: ``POST /endpoint`` (Data Model API) and ``POST /fhir/R4/$process-message``.

These are the hot path, so they are plain Starlette routes (no dependency injection), parse JSON with orjson, and
hand the message to the intake door: the 202 is sent only after the batch holding this log is committed.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from healthway.domain import messages, scopes
from healthway.domain.messages import ContentType
from healthway.errors import HealthwayError
from healthway.transports.http import sync
from healthway.transports.http.data_endpoints import (
    accept,
    fhir_error,
    json_response,
    operation_outcome,
    parse_json,
    submission,
)


async def endpoint(request: Request) -> Response:
    """Data Model API SEND → 202 with the request's Meta plus Meta.Logs, after the commit."""
    hw, caller, body = await accept(request)
    meta = messages.parse_data_model(parse_json(body))
    caller.grant.require(scopes.for_data_model(meta.data_model, query=meta.is_query))
    if meta.is_query:
        return await sync.data_model_query(hw, caller, request, body, meta)
    sub = submission(
        hw,
        caller,
        request,
        body,
        content_type=ContentType.JSON,
        data_model=meta.data_model,
        event_type=meta.event_type,
        test=meta.test,
        meta=meta.meta,
        destination_ids=meta.destination_ids,
    )
    receipt = await hw.intake.accept(sub)
    response_meta = {
        **meta.meta,
        "Source": {"ID": caller.source.id, "Name": caller.source.name},
        "Logs": [{"ID": receipt.log_id, "AttemptID": receipt.attempt_id}],
    }
    return json_response({"Meta": response_meta, "Errors": []}, 202)


async def process_message(request: Request) -> Response:
    """FHIR message Bundle → 202 + OperationOutcome naming the log. Errors are OperationOutcomes too."""
    try:
        hw, caller, body = await accept(request)
        bundle = parse_json(body)
        event_type = messages.parse_fhir_message(bundle)
        caller.grant.require(*scopes.for_fhir_message(messages.message_resource_types(bundle)))
        sub = submission(
            hw, caller, request, body, content_type=ContentType.FHIR_JSON, data_model="Bundle", event_type=event_type
        )
        receipt = await hw.intake.accept(sub)
    except HealthwayError as exc:
        return fhir_error(exc)
    outcome = operation_outcome("information", "informational", f"accepted as log {receipt.log_id}")
    outcome["id"] = receipt.log_id
    return json_response(outcome, 202, ContentType.FHIR_JSON)


routes = [
    Route("/endpoint", endpoint, methods=["POST"]),
    Route("/fhir/R4/$process-message", process_message, methods=["POST"]),
]
