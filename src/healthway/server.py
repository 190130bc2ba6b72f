"""``healthway serve``: bind first (a busy port fails before anything changes), migrate, then run."""

from __future__ import annotations

import asyncio
import errno
import signal
import socket

import structlog

from healthway.errors import ConfigurationError
from healthway.runtime import Healthway, Sockets, running
from healthway.settings import Settings

log = structlog.get_logger("healthway")


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


def bind_all(settings: Settings) -> Sockets:
    """Every listening socket of the node, each skipped when its port setting is 0."""
    return Sockets(
        http=bind(settings.host, settings.http_port, "HTTP") if settings.http_port else None,
        mllp=bind(settings.host, settings.mllp_port, "MLLP") if settings.mllp_port else None,
    )


def run(hw: Healthway) -> bool:
    """Run the node's parts (its listeners among them) until SIGTERM/SIGINT. False when start-up failed. One
    process, one node: a worker pool builds and runs one node per process over the parent's sockets."""
    for warning in hw.db.permission_warnings():
        log.warning("the data directory is readable by others", detail=warning)
    try:
        asyncio.run(_serve(hw))
    except ConfigurationError as exc:  # a part could not start (a busy metrics port...): said once, plainly
        log.error("start-up failed", error=exc.message)  # noqa: TRY400 (the message is the whole story)
        return False
    return True


async def _serve(hw: Healthway) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        async with running(hw.parts):
            if (mllp := hw.sockets.mllp) is not None:
                host, port = mllp.getsockname()[:2]
                log.info("mllp listening", address=f"{host}:{port}", tls=hw.settings.mllp_tls_cert is not None)
            if (http := hw.sockets.http) is not None:
                scheme = "https" if hw.settings.tls_cert else "http"
                host, port = http.getsockname()[:2]
                log.info("healthway listening", url=f"{scheme}://{host}:{port}", public_url=hw.settings.public_url)
            else:
                log.info("healthway running without HTTP (HEALTHWAY_HTTP_PORT=0)")
            await stopping.wait()
            log.info("stopping")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
