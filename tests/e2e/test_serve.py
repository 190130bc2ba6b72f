"""``healthway serve`` as a process: readiness, clean shutdown, busy ports, PostgreSQL."""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import time

import httpx
import pytest

from tests.e2e.conftest import HEALTHWAY, Cli, Server, start_server


def test_serve_is_ready_and_stops_cleanly_on_sigterm(server: Server) -> None:
    ready = httpx.get(f"{server.base_url}/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["database"] is True
    assert httpx.get(f"{server.base_url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server.base_url}/metrics").status_code == 401  # an owner's token, or HEALTHWAY_METRICS_ADDRESS
    assert httpx.get(f"{server.base_url}/nope").json()["error"]["code"] == "not_found"
    started = time.monotonic()
    assert server.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 5


def test_serve_stops_cleanly_on_sigint(server: Server) -> None:
    assert server.stop(signal.SIGINT) == 0


def test_serve_refuses_a_busy_port_without_migrating(cli: Cli) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli.run("serve", check=False, HEALTHWAY_HTTP_PORT=str(port))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: cannot listen for HTTP on 127.0.0.1:{port}: already in use (set HEALTHWAY_HTTP_PORT to another port)"
    )
    assert "Traceback" not in result.stderr
    with sqlite3.connect(cli.cwd / "data" / "healthway.db") as conn:  # reachable, but nothing migrated
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone() == (0,)


@pytest.mark.postgres
def test_serve_on_postgresql(cli: Cli, postgres_url: str) -> None:
    srv = start_server(cli, HEALTHWAY_DATABASE_URL=postgres_url)
    try:
        assert httpx.get(f"{srv.base_url}/readyz").json()["checks"]["database"] is True
        init = cli.run(
            "init", "--admin-email", "pg@example.org", "--json", "--if-needed", HEALTHWAY_DATABASE_URL=postgres_url
        )
        assert init.returncode == 0
    finally:
        assert srv.stop() == 0


def test_serve_without_http_runs_the_other_parts_and_stops_on_sigterm(cli: Cli) -> None:
    """HEALTHWAY_HTTP_PORT=0 disables HTTP (DESIGN §6): the node still runs its other parts, under the same signal
    handler, because the lifecycle belongs to the server and not to the web framework."""
    port = int(cli.env["HEALTHWAY_HTTP_PORT"])
    log_path = cli.cwd / "serve-no-http.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [HEALTHWAY, "serve"], env={**cli.env, "HEALTHWAY_HTTP_PORT": "0"}, cwd=cli.cwd, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 30
        while "running without HTTP" not in log_path.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log_path.read_text()
            time.sleep(0.1)
        text = log_path.read_text()
        assert '"part": "group_commit"' in text and '"part": "delivery"' in text
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
