"""Request body limits that hold before any route runs, and the cap on concurrent large uploads.

- The data endpoints (``/endpoint``, ``/fhir/R4/...``) read their own bodies, capped at
  ``HEALTHWAY_MAX_MESSAGE_BYTES`` after the caller is authenticated; the OAuth endpoints cap theirs at 64 KiB.
- Every other route (the Platform API, legacy auth, the dashboard) is management: its body may not exceed
  ``MANAGEMENT_MAX_BYTES``. A declared ``Content-Length`` above it is refused before a byte of the body is read;
  a chunked body is counted as it arrives and refused when it passes the limit. Either way 413, DESIGN §3's shape,
  and the connection is closed (the rest of the body is never read).
- A data body that may exceed ``LARGE_BODY_BYTES`` is read only while one of ``HEALTHWAY_HTTP_MAX_LARGE_UPLOADS``
  slots is free, so memory held by uploads in flight is bounded; none free → 503 with ``Retry-After`` at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from healthway.errors import ServerBusy
from healthway.transports.http.errors import error_response

MIB = 2**20
MANAGEMENT_MAX_BYTES = 1 * MIB
LARGE_BODY_BYTES = 1 * MIB
SELF_LIMITED = ("/endpoint", "/fhir/", "/v2/auth/")  # routes that cap (and stream) their own bodies


class BodyLimitMiddleware:
    """Caps management request bodies at ``limit`` bytes (pure ASGI: nothing is buffered beyond the limit)."""

    def __init__(self, app: ASGIApp, *, limit: int = MANAGEMENT_MAX_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(SELF_LIMITED):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(scope, receive, send)
            return
        first = await _read_within(receive, self.limit)
        if first is None:
            await self._refuse(scope, receive, send)
            return
        await self.app(scope, _replaying(first, receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, "payload_too_large", f"the request body exceeds {self.limit} bytes", {"Connection": "close"}
        )
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def _read_within(receive: Receive, limit: int) -> Message | None:
    """The whole body as one ``http.request`` message, or None as soon as it passes ``limit``. A disconnect is
    handed on as it is."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return message
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}


def _replaying(first: Message, receive: Receive) -> Receive:
    """A receive that answers ``first`` once, then defers to the server's (for the disconnect)."""
    pending: list[Message] = [first]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


class UploadSlots:
    """At most ``size`` large bodies read at once. The event loop is single-threaded: a counter suffices."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.used = 0

    @contextmanager
    def take(self, largest: int) -> Iterator[None]:
        """Hold a slot while reading a body of up to ``largest`` bytes (small ones need none)."""
        if largest <= LARGE_BODY_BYTES:
            yield
            return
        if self.used >= self.size:
            raise ServerBusy("too many large uploads in progress; retry shortly")
        self.used += 1
        try:
            yield
        finally:
            self.used -= 1
