"""uvicorn serving the HTTP app on an already bound socket: one part of the node, like the others."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Generator
from contextlib import contextmanager

import uvicorn

from healthway.errors import ConfigurationError
from healthway.runtime import Healthway
from healthway.transports.http.app import create_app
from healthway.transports.http.protocol import timed_protocol

SHUTDOWN_GRACE_SECONDS = 3  # SIGTERM/SIGINT must stop everything within 5 s


class _Uvicorn(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """No signal handling of its own: ``run`` has the one handler, and stops uvicorn as one of the parts."""
        yield


class HttpListener:
    """The HTTP part: started last and stopped first of the node's parts (``app.build`` orders them)."""

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
