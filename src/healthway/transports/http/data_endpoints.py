"""What every data endpoint does on the wire: rate limits, bearer authentication, the size-capped body, JSON,
the Submission it hands to intake, and FHIR OperationOutcome errors. Shared by intake, sync and legacy auth."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from healthway.domain import messages
from healthway.domain.messages import ContentType
from healthway.errors import HealthwayError, InvalidRequest, InvalidToken, PayloadTooLarge
from healthway.runtime import Healthway
from healthway.services import intake
from healthway.transports.http import bearer
from healthway.transports.http.bearer import Caller
from healthway.transports.http.errors import error_headers
from healthway.transports.http.limits import UploadSlots

IDEMPOTENCY_HEADER = "idempotency-key"
T = TypeVar("T")


def json_response(body: Any, status: int, media_type: str = ContentType.JSON) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=media_type)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) as soon as it is known to exceed ``limit``: never buffers past it. A large
    body (one that may exceed ``LARGE_BODY_BYTES``) takes one of the few upload slots while it is read; none free →
    503 at once."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body exceeds {limit} bytes")
    slots: UploadSlots = request.app.state.upload_slots
    with slots.take(int(declared) if declared.isdigit() else limit):
        return await _read_capped(request, limit)


async def _read_capped(request: Request, limit: int) -> bytes:
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
    return messages.check_text(key, "Idempotency-Key") if key is not None else None


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


def operation_outcome(severity: str, code: str, diagnostics: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


FHIR_ISSUE_CODES = {
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
        operation_outcome("error", FHIR_ISSUE_CODES.get(exc.status_code, "exception"), exc.message),
        exc.status_code,
        ContentType.FHIR_JSON,
    )
    response.headers.update(error_headers(exc))
    return response
