"""uvicorn's httptools protocol with read deadlines, so a slow or silent client cannot hold a connection forever.

uvicorn times out only idle keep-alive connections; a client that sends half its headers, or stalls in its body,
is otherwise kept until it leaves. Two deadlines close such a connection:

1. **headers**: the request line and headers must all arrive within ``header_timeout`` of the connection opening
   (or of the first byte of a later keep-alive request). Not reset by each byte: trickling does not help.
2. **body**: while the application waits for the body, it may not stall longer than ``body_timeout`` between two
   chunks. Time the application spends not reading (uvicorn then pauses the socket) does not count.

Only the parser callbacks (``on_message_begin``, ``on_headers_complete``, ``on_body``, ``on_message_complete``) and
the connection callbacks are extended; the rest is uvicorn's.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class TimedHttpToolsProtocol(HttpToolsProtocol):
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    _deadline: asyncio.TimerHandle | None = None
    _reading_headers = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._expect_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._reading_headers:  # a later request on a kept-alive connection
            self._expect_headers()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._reading_headers = False
        self._arm(self.body_timeout)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm(self.body_timeout)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def _expect_headers(self) -> None:
        self._reading_headers = True
        self._arm(self.header_timeout)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, seconds)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, seconds: float) -> None:
        self._deadline = None
        if not self._reading_headers and self.flow.read_paused:  # the application is not reading: not the client
            self._arm(seconds)
        elif not self.transport.is_closing():
            self.transport.close()


def timed_protocol(*, header_timeout: float, body_timeout: float) -> type[TimedHttpToolsProtocol]:
    """The protocol class uvicorn instantiates per connection, with these deadlines."""
    return type(
        "TimedHttpToolsProtocol",
        (TimedHttpToolsProtocol,),
        {"header_timeout": header_timeout, "body_timeout": body_timeout},
    )
