"""Shared benchmark plumbing: a throwaway Healthway (SQLite) served as a subprocess, and wrk as the load."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
HEALTHWAY = str(BIN / "healthway")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"{url} not ready after {timeout} s")


@dataclass
class Instance:
    base_url: str
    env: dict[str, str]

    def cli(self, *args: str) -> dict[str, str]:
        out = subprocess.run([HEALTHWAY, *args, "--json"], env=self.env, check=True, capture_output=True, text=True)
        return dict(json.loads(out.stdout))


def fresh_postgres_database(url: str) -> str:
    """A new empty database on the server of ``url`` (each benchmark run starts from nothing)."""
    import psycopg  # noqa: PLC0415

    name = f"hw_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")  # a generated name, not input
    return url.rsplit("/", 1)[0] + "/" + name


@contextmanager
def healthway(**settings: str) -> Iterator[Instance]:
    """``healthway serve`` on a fresh SQLite data dir, rate limits off, quiet logs."""
    data = tempfile.mkdtemp(prefix="hw-bench-")
    if settings.get("HEALTHWAY_DATABASE_URL", "").startswith("postgresql://"):
        settings["HEALTHWAY_DATABASE_URL"] = fresh_postgres_database(settings["HEALTHWAY_DATABASE_URL"])
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHWAY_")} | {
        "HEALTHWAY_DATA_DIR": data,
        "HEALTHWAY_HTTP_PORT": str(port),
        "HEALTHWAY_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "HEALTHWAY_RATE_LIMIT_PER_ADDRESS": "none",
        "HEALTHWAY_RATE_LIMIT_PER_SOURCE": "none",
        "HEALTHWAY_LOG_LEVEL": "warning",
        **settings,
    }
    instance = Instance(f"http://127.0.0.1:{port}", env)
    instance.cli("init", "--admin-email", "bench@example.org")
    process = subprocess.Popen([HEALTHWAY, "serve"], env=env, stdout=subprocess.DEVNULL)
    try:
        wait_ready(f"{instance.base_url}/readyz", process)
        yield instance
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)
        shutil.rmtree(data, ignore_errors=True)


@contextmanager
def python_server(module_path: Path, port: int, *args: str) -> Iterator[None]:
    process = subprocess.Popen([sys.executable, str(module_path), str(port), *args], stdout=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}/ready", process)
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)


@dataclass
class LoadResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * _UNIT_MS[unit]


def wrk(url: str, *, body_file: Path, headers: dict[str, str], connections: int = 64, seconds: int = 10) -> LoadResult:
    """POST ``body_file`` to ``url`` with wrk at ``connections`` connections; latency percentiles from wrk."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    script = body_file.with_suffix(".lua")
    lines = ['wrk.method = "POST"', f'local f = io.open("{body_file}", "rb")', "wrk.body = f:read('*a')", "f:close()"]
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return LoadResult(rps, p50, p99, int(non2xx.group(1)) if non2xx else 0)
