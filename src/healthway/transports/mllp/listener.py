"""The MLLP listener: a part of the server that owns the MLLP socket (DESIGN §4).

Per connection, in order:
1. the peer address (and, over TLS, the client certificate's fingerprint) is matched against every source's MLLP
   peers while reading is paused: no match closes the connection before any byte is read;
2. bytes are cut into frames on the end bytes only (``hl7.Deframer``), however they arrive; bytes outside frames
   are dropped and counted;
3. frames are handled strictly one after another, each acknowledged after its commit, so ACKs come in frame order.
   While frames wait, reading pauses (a fast peer cannot queue unbounded work);
4. a peer that goes away leaves its received frames to be committed all the same (their ACKs go nowhere);
5. an idle connection (no byte for ``idle_timeout``) is closed; stopping stops accepting, finishes the frames
   already received, then closes every connection.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter

from healthway.domain import hl7
from healthway.domain.mllp_peers import admits
from healthway.errors import FrameTooLarge
from healthway.net.tls_material import peer_fingerprint, server_context
from healthway.runtime import Healthway
from healthway.services.mllp_peers import PeerDirectory
from healthway.transports.mllp.frames import FrameHandler, Sender

log = structlog.get_logger("healthway.mllp")
MAX_WAITING_FRAMES = 64  # frames received and not yet acknowledged before reading pauses
TLS_HANDSHAKE_SECONDS = 10.0
STOP_GRACE_SECONDS = 2.0  # stopping waits this long for frames in flight (SIGTERM must end within 5 s)
_CLOSED = None  # the queue's last item: the connection is gone or stopping


class MllpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.acks = Counter(
            "healthway_mllp_acks", "MLLP ACKs sent, by status (accept, error, reject)", ["status"], registry=registry
        )
        self.discarded = Counter(
            "healthway_mllp_discarded_bytes", "Bytes received outside any MLLP frame", registry=registry
        )
        self.refused = Counter(
            "healthway_mllp_refused_connections", "MLLP connections from no source's peers", registry=registry
        )


class MllpListener:
    """Serves MLLP on an already bound socket (bound first by ``serve``, so a busy port fails before anything)."""

    name = "mllp"

    def __init__(
        self,
        sock: socket.socket,
        *,
        handler: FrameHandler,
        peers: PeerDirectory,
        metrics: MllpMetrics,
        max_size: int,
        idle_timeout: float,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.sock = sock
        self.tls = tls
        self._context = _Context(handler, peers, metrics, max_size, idle_timeout)
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        tls: dict[str, Any] = {"ssl": self.tls, "ssl_handshake_timeout": TLS_HANDSHAKE_SECONDS} if self.tls else {}
        self._server = await loop.create_server(lambda: _Connection(self._context), sock=self.sock, **tls)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()  # no new connections; the open ones finish what they received
        connections = list(self._context.connections)
        if connections:
            await asyncio.wait([asyncio.ensure_future(c.finish()) for c in connections], timeout=STOP_GRACE_SECONDS)
        for connection in connections:
            connection.abort()
        self._server = None

    def is_up(self) -> bool:
        return self._server is not None and self._server.is_serving()


class _Context:
    """What every connection of one listener shares."""

    def __init__(
        self, handler: FrameHandler, peers: PeerDirectory, metrics: MllpMetrics, max_size: int, idle_timeout: float
    ) -> None:
        self.handler = handler
        self.peers = peers
        self.metrics = metrics
        self.max_size = max_size
        self.idle_timeout = idle_timeout
        self.connections: set[_Connection] = set()


class _Connection(asyncio.Protocol):
    def __init__(self, context: _Context) -> None:
        self.context = context
        self.deframer = hl7.Deframer(context.max_size)
        self.frames: asyncio.Queue[bytes | FrameTooLarge | None] = asyncio.Queue()
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.idle: asyncio.TimerHandle | None = None
        self.busy = False

    # -- asyncio.Protocol --------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.pause_reading()  # not a byte before the peer is known
        self.context.connections.add(self)
        self.task = asyncio.create_task(self._serve(), name="mllp-connection")

    def data_received(self, data: bytes) -> None:
        self._arm_idle_timer()
        try:
            self._take(data)
        finally:
            self.context.metrics.discarded.inc(self.deframer.discarded)
            self.deframer.discarded = 0
        if self.frames.qsize() >= MAX_WAITING_FRAMES and self.transport is not None:
            self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.frames.put_nowait(_CLOSED)  # what was received is still committed
        if self.idle is not None:
            self.idle.cancel()

    # -- the connection's life ---------------------------------------------------------------------------------

    async def finish(self) -> None:
        """Stop reading, handle the frames already received, then close (the listener is stopping)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        self.frames.put_nowait(_CLOSED)
        if self.task is not None:
            await asyncio.shield(self.task)

    def abort(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.transport is not None:
            self.transport.abort()

    async def _serve(self) -> None:
        try:
            sender = await self._identify()
            if sender is not None:
                await self._answer_frames(sender)
        finally:
            self.context.connections.discard(self)
            if self.transport is not None:
                self.transport.close()

    async def _identify(self) -> Sender | None:
        assert self.transport is not None
        peername: Any = self.transport.get_extra_info("peername")
        host = str(peername[0]) if peername else ""
        matching = await asyncio.to_thread(self.context.peers.match, host)
        peer = admits(matching, peer_fingerprint(self.transport.get_extra_info("ssl_object")))
        if peer is None:
            self.context.metrics.refused.inc()
            log.warning("mllp connection refused", address=host, reason="certificate" if matching else "address")
            if not matching:
                await asyncio.to_thread(self.context.peers.refuse, host)
            return None
        self.transport.resume_reading()
        self._arm_idle_timer()
        return Sender(peer.source_id, peer.environment_id, host)

    async def _answer_frames(self, sender: Sender) -> None:
        handler = self.context.handler
        while (item := await self.frames.get()) is not _CLOSED:
            self.busy = True
            reply = handler.too_large(item) if isinstance(item, FrameTooLarge) else await handler.handle(sender, item)
            self.busy = False
            self.context.metrics.acks.labels(reply.status.name.lower()).inc()
            assert self.transport is not None
            if not self.transport.is_closing():
                self.transport.write(hl7.frame(reply.ack))
                if self.frames.empty():
                    self.transport.resume_reading()

    def _take(self, data: bytes) -> None:
        """Queue every complete frame in ``data``; a frame refused as too large is queued as its refusal."""
        while True:
            try:
                for message in self.deframer.feed(data):
                    self.frames.put_nowait(message)
            except FrameTooLarge as refused:
                self.frames.put_nowait(refused)
                data = b""  # go on with what followed the refused frame
                continue
            return

    def _arm_idle_timer(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        loop = asyncio.get_running_loop()
        self.idle = loop.call_later(self.context.idle_timeout, self._on_idle)

    def _on_idle(self) -> None:
        if self.busy or not self.frames.empty():
            self._arm_idle_timer()  # not idle: a frame is being committed
        elif self.transport is not None:
            log.info("mllp connection idle; closing")
            self.frames.put_nowait(_CLOSED)


def build_listener(hw: Healthway, sock: socket.socket) -> MllpListener:
    """The MLLP listener of ``hw`` on ``sock``, configured by the HEALTHWAY_MLLP_* settings."""
    settings = hw.settings
    tls = None
    if settings.mllp_tls_cert and settings.mllp_tls_key:
        tls = server_context(settings.mllp_tls_cert, settings.mllp_tls_key, settings.mllp_tls_client_ca)

    return MllpListener(
        sock,
        handler=FrameHandler(hw.intake.accept, hw.clock),
        peers=PeerDirectory(hw.db),
        metrics=MllpMetrics(hw.metrics),
        max_size=settings.stream_max_bytes,
        idle_timeout=settings.mllp_idle_timeout,
        tls=tls,
    )
