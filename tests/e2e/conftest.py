"""Run the real ``healthway`` command and server as subprocesses."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from healthway.cli import Parts, load_commands
from healthway.errors import HealthwayError
from healthway.testing import CHEAP_PASSWORDS

HEALTHWAY = str(Path(sys.executable).parent / "healthway")
CHEAP = Parts(passwords=CHEAP_PASSWORDS)  # what in-process commands hash passwords with


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cli:
    env: dict[str, str]
    cwd: Path

    def run(self, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [HEALTHWAY, *args],
            capture_output=True,
            text=True,
            env={**self.env, **env},
            cwd=self.cwd,
            timeout=60,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(f"healthway {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def invoke(self, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        """``run`` in this process through typer's runner: the same command, error lines and exit codes, without
        the second or so a new interpreter takes (and with cheap password hashing). Subprocess tests stay for what
        needs a process of its own."""
        wanted = {**self.env, **env}
        unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("HEALTHWAY_") and k not in wanted}
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        try:
            with contextlib.chdir(self.cwd):
                result = CliRunner().invoke(load_commands(), list(args), env={**wanted, **unset}, obj=CHEAP)
        finally:  # the command configured logging onto the runner's captured stderr: give the test's back
            root.handlers[:], root.level = handlers, level
        stderr, code = result.stderr, result.exit_code
        if isinstance(result.exception, HealthwayError):  # as healthway.cli.main reports it
            stderr, code = f"{stderr}error: {result.exception.message}\n", 1
        elif result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        completed = subprocess.CompletedProcess(["healthway", *args], code, result.stdout, stderr)
        if check and code != 0:
            pytest.fail(f"healthway {' '.join(args)} failed ({code}):\n{stderr}")
        return completed


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """A CLI whose environment points at a fresh data directory (SQLite) and free ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHWAY_")}
    env |= {
        "HEALTHWAY_DATA_DIR": str(tmp_path / "data"),
        "HEALTHWAY_HTTP_PORT": str(free_port()),
        "HEALTHWAY_MLLP_PORT": str(free_port()),
        "HEALTHWAY_SFTP_PORT": str(free_port()),
        # Receivers in these tests listen on 127.0.0.1 over plain HTTP: the operator's opt-ins allow that.
        "HEALTHWAY_ALLOW_LOOPBACK_DESTINATIONS": "1",
        "HEALTHWAY_ALLOW_HTTP_DESTINATIONS": "1",
    }
    return Cli(env, tmp_path)


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(cli: Cli, **env: str) -> Server:
    port = env.get("HEALTHWAY_HTTP_PORT", cli.env["HEALTHWAY_HTTP_PORT"])
    log_path = cli.cwd / f"serve-{port}.log"  # a file, not a pipe: a full pipe would block the server
    with log_path.open("wb") as log:
        process = subprocess.Popen([HEALTHWAY, "serve"], env={**cli.env, **env}, cwd=cli.cwd, stdout=log, stderr=log)
    server = Server(process, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited early ({process.returncode}):\n{server.log}")
        try:
            if httpx.get(f"{server.base_url}/readyz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    pytest.fail("server did not become ready within 30 s")


@pytest.fixture
def server(cli: Cli) -> Iterator[Server]:
    srv = start_server(cli)
    yield srv
    if srv.process.poll() is None:
        srv.process.kill()
        srv.process.wait()
