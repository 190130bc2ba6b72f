"""The data endpoints: ``POST /endpoint`` (Data Model API) and ``POST /fhir/R4/$process-message``.

These are the hot path, so they are plain Starlette routes (no dependency injection), parse JSON with orjson, and
hand the write to the group committer: the 202 is sent only after the batch holding this log is committed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from healthway.app import Healthway
from healthway.domain import messages
from healthway.errors import HealthwayError, InvalidRequest, InvalidToken, PayloadTooLarge
from healthway.services import intake
from healthway.transports.http import bearer
from healthway.transports.http.bearer import Caller
from healthway.transports.http.errors import rate_limit_headers

IDEMPOTENCY_HEADER = "idempotency-key"
T = TypeVar("T")


def json_response(body: Any, status: int, media_type: str = messages.JSON) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=media_type)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) as soon as it is known to exceed ``limit``: never buffers past it."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body exceeds {limit} bytes")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the body exceeds {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise InvalidRequest("the client disconnected before sending the whole body") from None
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidRequest("the body is not valid JSON") from None


def _authenticate(hw: Healthway, request: Request) -> Caller:
    with hw.db.read_connection() as conn:
        return bearer.authenticate(hw, conn, request)


async def in_database_thread(hw: Healthway, fn: Callable[..., T], *args: Any) -> T:
    """Run a short database read. SQLite reads on local disk take microseconds and never wait for writers (WAL),
    so they run right here: handing them to worker threads costs more than the read, and dozens of threads
    fighting over the GIL starve the event loop. PostgreSQL reads go over the network: a worker thread."""
    if hw.db.is_sqlite:
        return fn(*args)
    return await run_in_threadpool(fn, *args)


async def accept(request: Request) -> tuple[Healthway, Caller, bytes]:
    """Rate limits, authentication and the size-capped body: what every data endpoint does first."""
    hw: Healthway = request.app.state.healthway
    address = request.client.host if request.client else "unknown"
    await hw.rate_limiter.hit(hw.rate_limits.per_address, "address", address)
    if "authorization" not in request.headers:
        raise InvalidToken("a bearer access token is required")
    caller = await in_database_thread(hw, _authenticate, hw, request)
    await hw.rate_limiter.hit(hw.rate_limits.per_source, "source", caller.source.id)
    return hw, caller, await read_body(request, hw.settings.http_max_bytes)


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not 0 < len(key) <= intake.MAX_IDEMPOTENCY_KEY:
        raise InvalidRequest(f"Idempotency-Key must be 1 to {intake.MAX_IDEMPOTENCY_KEY} characters")
    return key


def submission(hw: Healthway, caller: Caller, request: Request, body: bytes, **fields: Any) -> intake.Submission:
    key = idempotency_key(request)
    return intake.Submission(
        source_id=caller.source.id,
        environment_id=caller.grant.environment.id,
        transport="http",
        payload=body,
        received_at=hw.clock(),
        dedup_key=key,
        request_sha256=intake.sha256(body) if key else None,
        **fields,
    )


async def endpoint(request: Request) -> Response:
    """Data Model API SEND → 202 with the request's Meta plus Meta.Logs, after the commit."""
    hw, caller, body = await accept(request)
    meta = messages.parse_data_model(parse_json(body))
    if meta.is_query:
        from healthway.transports.http import sync  # noqa: PLC0415 (sync builds on this module)

        return await sync.data_model_query(hw, caller, request, body, meta)
    sub = submission(
        hw,
        caller,
        request,
        body,
        content_type=messages.JSON,
        data_model=meta.data_model,
        event_type=meta.event_type,
        test=meta.test,
        meta=meta.meta,
        destination_ids=meta.destination_ids,
    )
    receipt = await hw.committer.submit(lambda session: intake.store(session, sub))
    response_meta = {
        **meta.meta,
        "Source": {"ID": caller.source.id, "Name": caller.source.name},
        "Logs": [{"ID": receipt.log_id, "AttemptID": receipt.attempt_id}],
    }
    return json_response({"Meta": response_meta, "Errors": []}, 202)


def operation_outcome(severity: str, code: str, diagnostics: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


_FHIR_ISSUE_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    413: "too-long",
    422: "duplicate",
    429: "throttled",
    502: "transient",
    503: "transient",
    504: "timeout",
}


def fhir_error(exc: HealthwayError) -> Response:
    response = json_response(
        operation_outcome("error", _FHIR_ISSUE_CODES.get(exc.status_code, "exception"), exc.message),
        exc.status_code,
        messages.FHIR_JSON,
    )
    if isinstance(exc, InvalidToken):
        response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    elif exc.status_code == 429:
        response.headers.update(rate_limit_headers(exc))  # type: ignore[arg-type]
    return response


async def process_message(request: Request) -> Response:
    """FHIR message Bundle → 202 + OperationOutcome naming the log. Errors are OperationOutcomes too."""
    try:
        hw, caller, body = await accept(request)
        event_type = messages.parse_fhir_message(parse_json(body))
        sub = submission(
            hw, caller, request, body, content_type=messages.FHIR_JSON, data_model="Bundle", event_type=event_type
        )
        receipt = await hw.committer.submit(lambda session: intake.store(session, sub))
    except HealthwayError as exc:
        return fhir_error(exc)
    outcome = operation_outcome("information", "informational", f"accepted as log {receipt.log_id}")
    outcome["id"] = receipt.log_id
    return json_response(outcome, 202, messages.FHIR_JSON)


routes = [
    Route("/endpoint", endpoint, methods=["POST"]),
    Route("/fhir/R4/$process-message", process_message, methods=["POST"]),
]
