"""``HEALTHWAY_METRICS_ADDRESS``: Prometheus metrics on a listener of their own, apart from the public port.

Metrics describe the whole installation (every organization's traffic), so they are not for tenants: an operator
binds them to an address only the monitoring system reaches (``127.0.0.1:9100``, a private interface), and the
public ``/metrics`` then answers 404. prometheus_client's own small threaded server does the serving.
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from healthway.errors import ConfigurationError

SETTING = "HEALTHWAY_METRICS_ADDRESS"


def parse_address(value: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9100`` for IPv6) → (host, port)."""
    host, colon, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(f"{SETTING} must be host:port, such as 127.0.0.1:9100")
    return host, int(port)


class MetricsListener:
    """Serves ``registry`` at ``http://host:port/metrics`` while the HTTP server runs."""

    name = "metrics"

    def __init__(self, address: str, registry: CollectorRegistry) -> None:
        self.host, self.port = parse_address(address)
        self.registry = registry
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        try:
            self._server, self._thread = start_http_server(self.port, self.host, registry=self.registry)
        except OSError as exc:
            raise ConfigurationError(f"cannot listen for metrics on {self.host}:{self.port}: {exc.strerror}") from None

    async def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def is_up(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
