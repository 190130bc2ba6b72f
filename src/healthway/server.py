"""``healthway serve``: bind first (a busy port fails before anything changes), migrate, then run."""

from __future__ import annotations

import asyncio
import errno
import signal
import socket
from collections.abc import Generator
from contextlib import contextmanager

import structlog
import uvicorn

from healthway.app import Healthway
from healthway.errors import ConfigurationError
from healthway.transports.http.app import create_app
from healthway.transports.http.protocol import timed_protocol

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


class _Server(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Stop gracefully on SIGTERM/SIGINT and exit 0, instead of re-raising the signal as uvicorn does."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)


def run(hw: Healthway, http_socket: socket.socket) -> bool:
    """Serve until SIGTERM/SIGINT. False when start-up failed."""
    settings = hw.settings
    config = uvicorn.Config(
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
        lifespan="on",
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
        server_header=False,
    )
    server = _Server(config)
    scheme = "https" if settings.tls_cert else "http"
    host, port = http_socket.getsockname()[:2]
    for warning in hw.db.permission_warnings():
        log.warning("the data directory is readable by others", detail=warning)
    log.info("healthway listening", url=f"{scheme}://{host}:{port}", public_url=settings.public_url)
    asyncio.run(server.serve(sockets=[http_socket]))
    return server.started
