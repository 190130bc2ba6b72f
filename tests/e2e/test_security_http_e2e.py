"""Issue 14 through a real ``healthway serve`` and real sockets (loopback only): read deadlines, connection and
upload limits, body caps before the body is sent, proxy headers, private data files, the metrics listener."""

from __future__ import annotations

import json
import os
import socket
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Cli, Server, free_port, start_server

MIB = 2**20


def modes(directory: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in [directory, *directory.iterdir()]}


def new_cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    root = tmp_path_factory.mktemp("hw")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHWAY_")}
    env |= {
        "HEALTHWAY_DATA_DIR": str(root / "data"),
        "HEALTHWAY_HTTP_PORT": str(free_port()),
        "HEALTHWAY_MLLP_PORT": "0",
        "HEALTHWAY_SFTP_PORT": "0",
    }
    return Cli(env, root)


def running(cli: Cli, **env: str) -> Iterator[Server]:
    server = start_server(cli, **env)
    yield server
    if server.process.poll() is None:
        server.stop()


def connect(server: Server) -> socket.socket:
    port = int(server.base_url.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def wait_closed(sock: socket.socket, within: float) -> tuple[bytes, float]:
    """(everything the server sent, seconds until it closed); fails if it is still open after ``within``."""
    started, data = time.monotonic(), b""
    sock.settimeout(within)
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for {within} s")
    except ConnectionResetError:
        pass
    return data, time.monotonic() - started


def read_response(sock: socket.socket) -> bytes:
    """One whole response (headers and a Content-Length body), without waiting for the connection to close."""
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < int(
        response_of(data)[1].get("content-length", "0")
    ):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def response_of(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), {k.lower(): v for k, v in headers.items()}, body


# -- item 17 (and 4): slow clients, connection limit -----------------------------------------------------------


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Short deadlines, a small connection limit, 2 SENDs a minute per address, no trusted proxy."""
    yield from running(
        new_cli(tmp_path_factory),
        HEALTHWAY_HTTP_HEADER_TIMEOUT="1",
        HEALTHWAY_HTTP_BODY_TIMEOUT="1",
        HEALTHWAY_HTTP_MAX_CONNECTIONS="4",
        HEALTHWAY_RATE_LIMIT_PER_ADDRESS="2/minute",
    )


def test_a_client_that_sends_half_its_headers_is_disconnected(strict: Server) -> None:
    with connect(strict) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        data, seconds = wait_closed(sock, within=5)
    assert data == b"" and 0.8 < seconds < 3


def test_a_client_that_stalls_in_its_body_is_disconnected(strict: Server) -> None:
    with connect(strict) as sock:
        sock.sendall(b"POST /platform/v1/tokens HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{")
        _, seconds = wait_closed(sock, within=5)
    assert 0.8 < seconds < 3


def test_connections_beyond_the_limit_are_refused_with_503(strict: Server) -> None:
    idle = [connect(strict) for _ in range(4)]
    try:
        with connect(strict) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            status, _, _ = response_of(wait_closed(sock, within=5)[0])
        assert status == 503
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 5  # the idle ones are gone: served again
    while httpx.get(f"{strict.base_url}/healthz", timeout=5).status_code != 200:
        assert time.monotonic() < deadline


def test_a_declared_huge_management_body_is_refused_before_it_is_sent(strict: Server) -> None:
    with connect(strict) as sock:
        sock.sendall(
            b"POST /platform/v1/tokens HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {300 * MIB}\r\n\r\n".encode()
        )
        data, seconds = wait_closed(sock, within=5)
    status, headers, body = response_of(data)
    assert status == 413 and seconds < 0.8  # at once: not after the body deadline
    assert headers["connection"] == "close"
    assert json.loads(body)["error"]["code"] == "payload_too_large"


# -- item 17: large uploads; item 21: the metrics listener ------------------------------------------------------


@dataclass
class Gateway:
    server: Server
    token: str  # a legacy access token of a source
    metrics_port: int
    data: Path
    modes_after_init: dict[str, int]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """Initialized under a usual 022 umask, its data dir then opened to 0755 by hand; one large upload at a time;
    metrics on their own port."""
    cli, metrics_port = new_cli(tmp_path_factory), free_port()
    data = Path(cli.env["HEALTHWAY_DATA_DIR"])
    previous = os.umask(0o022)  # the CLI must not depend on the shell's umask
    try:
        cli.run("init", "--admin-email", "admin@example.org")
    finally:
        os.umask(previous)
    after_init = modes(data)
    data.chmod(0o755)
    source = json.loads(cli.run("source", "create", "--env", "development", "--name", "EHR", "--json").stdout)
    key = json.loads(cli.run("key", "create-legacy", "--source", source["id"], "--json").stdout)
    for server in running(
        cli,
        HEALTHWAY_HTTP_MAX_LARGE_UPLOADS="1",
        HEALTHWAY_HTTP_BODY_TIMEOUT="10",
        HEALTHWAY_METRICS_ADDRESS=f"127.0.0.1:{metrics_port}",
    ):
        credentials = {"apiKey": key["api_key"], "secret": key["secret"]}
        login = httpx.post(f"{server.base_url}/auth/authenticate", json=credentials)
        yield Gateway(server, login.json()["accessToken"], metrics_port, data, after_init)


def upload_head(token: str, size: int) -> bytes:
    return (
        f"POST /endpoint HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    ).encode()


def test_large_uploads_beyond_the_cap_are_refused_at_once(gateway: Gateway) -> None:
    server, token = gateway.server, gateway.token
    with connect(server) as first:
        first.sendall(upload_head(token, 4 * MIB) + b"x" * (256 * 1024))  # takes the only slot, then dawdles
        time.sleep(0.3)  # for the server to authenticate it and start reading its body
        with connect(server) as second:
            started = time.monotonic()
            second.sendall(upload_head(token, 4 * MIB))
            status, headers, body = response_of(read_response(second))
            seconds = time.monotonic() - started
    assert status == 503 and seconds < 2
    assert headers["retry-after"] == "1" and json.loads(body)["error"]["code"] == "server_busy"
    small = httpx.post(
        f"{server.base_url}/endpoint",
        json={"Meta": {"DataModel": "PatientAdmin", "EventType": "Arrival"}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert small.status_code == 202  # small messages never wait for a slot


def test_metrics_are_served_on_their_own_address_and_not_on_the_public_port(gateway: Gateway) -> None:
    server, metrics_port = gateway.server, gateway.metrics_port
    httpx.get(f"{server.base_url}/healthz")
    assert httpx.get(f"{server.base_url}/metrics").status_code == 404
    scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
    assert scraped.status_code == 200
    assert 'healthway_http_requests_total{method="GET",route="/healthz",status="200"}' in scraped.text


# -- item 11: X-Forwarded-For only from trusted proxies ---------------------------------------------------------


def statuses_with_forwarded_addresses(server: Server) -> list[int]:
    """Three unauthenticated SENDs, each claiming another client address; the per-address limit is 2/minute."""
    return [
        httpx.post(f"{server.base_url}/endpoint", headers={"X-Forwarded-For": f"198.51.100.{n}"}).status_code
        for n in range(3)
    ]


def test_x_forwarded_for_is_ignored_without_trusted_proxies(strict: Server) -> None:
    assert statuses_with_forwarded_addresses(strict) == [401, 401, 429]  # all counted as 127.0.0.1


def test_x_forwarded_for_is_believed_from_a_trusted_proxy(tmp_path_factory: pytest.TempPathFactory) -> None:
    for server in running(
        new_cli(tmp_path_factory),
        HEALTHWAY_RATE_LIMIT_PER_ADDRESS="2/minute",
        HEALTHWAY_TRUSTED_PROXIES="127.0.0.1/32",
    ):
        assert statuses_with_forwarded_addresses(server) == [401, 401, 401]  # three clients behind the proxy


# -- item 13: the data directory and files are private ----------------------------------------------------------


def test_the_data_dir_is_private_and_a_wider_one_is_reported(gateway: Gateway) -> None:
    assert gateway.modes_after_init == {"data": 0o700, "healthway.db": 0o600}
    files = modes(gateway.data)  # the server holds the database open and has written: -wal and -shm exist
    assert files["healthway.db-wal"] == files["healthway.db-shm"] == files["healthway.db"] == 0o600
    warning = f"{gateway.data} is readable by others (mode 755); chmod 700 it"
    assert httpx.get(f"{gateway.server.base_url}/readyz").json()["warnings"] == [warning]
    assert "the data directory is readable by others" in gateway.server.log and warning in gateway.server.log
