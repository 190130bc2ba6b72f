"""``healthway serve``: bind first (a busy port fails before anything changes), migrate, then run."""

from __future__ import annotations

import asyncio
import errno
import signal
import socket
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass

import structlog
import uvicorn

from healthway.errors import ConfigurationError
from healthway.runtime import Healthway, Part, running
from healthway.settings import Settings
from healthway.transports.http.app import create_app
from healthway.transports.http.protocol import timed_protocol
from healthway.transports.mllp.listener import build_listener as mllp_listener

log = structlog.get_logger("healthway")
SHUTDOWN_GRACE_SECONDS = 3  # SIGTERM/SIGINT must stop everything within 5 s


def bind(host: str, port: int, what: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only when the proto says TCP (else Nagle
    # and delayed ACKs add 40 ms to every keep-alive request).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = "already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        setting = f"HEALTHWAY_{what.upper()}_PORT"
        raise ConfigurationError(
            f"cannot listen for {what} on {host}:{port}: {reason} (set {setting} to another port)"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class _Uvicorn(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """No signal handling of its own: ``run`` has the one handler, and stops uvicorn as one of the parts."""
        yield


class HttpListener:
    """uvicorn serving the HTTP app on an already bound socket: one part of the node, like the others."""

    name = "http"

    def __init__(self, hw: Healthway, sock: socket.socket) -> None:
        self.sock = sock
        self._server = _Uvicorn(_uvicorn_config(hw))
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self.sock]), name="http")
        while not self._server.started:  # uvicorn has no started event; it starts within a few loop turns
            if self._task.done():
                self._task.result()  # its exception, if any
                raise ConfigurationError("the HTTP server did not start")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task

    def is_up(self) -> bool:
        return self._server.started and self._task is not None and not self._task.done()


def _uvicorn_config(hw: Healthway) -> uvicorn.Config:
    settings = hw.settings
    return uvicorn.Config(
        create_app(hw),
        http=timed_protocol(header_timeout=settings.http_header_timeout, body_timeout=settings.http_body_timeout),
        # X-Forwarded-For/-Proto are believed only from HEALTHWAY_TRUSTED_PROXIES (uvicorn's default trusts
        # 127.0.0.1, and so anyone behind a local hop could pick their address for rate limits and audit).
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=[str(network) for network in settings.trusted_proxies],
        # uvicorn counts the connection asking among the open ones: +1 so that N connections are served.
        limit_concurrency=settings.http_max_connections + 1,
        log_config=None,
        access_log=False,
        lifespan="off",  # the node's parts are run by ``run``, not by the web framework
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
        server_header=False,
    )


@dataclass(frozen=True)
class Sockets:
    """The listening sockets of a node, bound before anything else (a busy port fails before the database is
    touched); None where the port setting is 0. A worker pool binds once and hands the same sockets to each
    process."""

    http: socket.socket | None = None
    mllp: socket.socket | None = None


def bind_all(settings: Settings) -> Sockets:
    return Sockets(
        http=bind(settings.host, settings.http_port, "HTTP") if settings.http_port else None,
        mllp=bind(settings.host, settings.mllp_port, "MLLP") if settings.mllp_port else None,
    )


def listeners(hw: Healthway, sockets: Sockets) -> list[Part]:
    """The parts that own a socket, HTTP last: requests come only once everything behind them runs."""
    parts: list[Part] = []
    if sockets.mllp is not None:
        parts.append(mllp_listener(hw, sockets.mllp))
    if sockets.http is not None:
        parts.append(HttpListener(hw, sockets.http))
    return parts


def run(hw: Healthway, sockets: Sockets) -> bool:
    """Run the node's parts and its listeners until SIGTERM/SIGINT. False when start-up failed. One process, one
    node: a worker pool calls this once per process with the parent's sockets."""
    for warning in hw.db.permission_warnings():
        log.warning("the data directory is readable by others", detail=warning)
    try:
        asyncio.run(_serve(hw, sockets))
    except ConfigurationError as exc:  # a part could not start (a busy metrics port...): said once, plainly
        log.error("start-up failed", error=exc.message)  # noqa: TRY400 (the message is the whole story)
        return False
    return True


async def _serve(hw: Healthway, sockets: Sockets) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        async with running([*hw.parts, *listeners(hw, sockets)]):
            if sockets.mllp is not None:
                host, port = sockets.mllp.getsockname()[:2]
                log.info("mllp listening", address=f"{host}:{port}", tls=hw.settings.mllp_tls_cert is not None)
            if sockets.http is not None:
                scheme = "https" if hw.settings.tls_cert else "http"
                host, port = sockets.http.getsockname()[:2]
                log.info("healthway listening", url=f"{scheme}://{host}:{port}", public_url=hw.settings.public_url)
            else:
                log.info("healthway running without HTTP (HEALTHWAY_HTTP_PORT=0)")
            await stopping.wait()
            log.info("stopping")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
