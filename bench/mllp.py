"""Durable MLLP ACKs per second and ACK latency (p50/p99) over one sequential connection and over 8 concurrent
ones, next to a reference measured in the same run (a minimal asyncio MLLP server committing each message to
SQLite with synchronous=FULL before its ACK) and the same server storing nothing (what this load client can
drive). Usage: .venv/bin/python bench/mllp.py [seconds]"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.common import free_port, healthway

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
HERE = Path(__file__).parent
MESSAGE = (
    "MSH|^~\\&|NW_ADT|NORTHWIND_GH|HEALTHWAY|HWGW|20250314083000||ADT^A01^ADT_A01|{id}|P|2.5.1\r"
    "EVN|A01|20250314083000\r"
    "PID|1||NWH100001^^^NWH^MR||Fairweather^Elinor^Jane||19780422|F|||214 Lantern Way^^Lakeview^WI^53001\r"
    "PV1|1|I|3N^312^B^NWH|E|||NWP1001^Okonkwo^Adaeze^^^Dr^MD\r"
)


@dataclass
class Result:
    acks_per_s: float
    p50_ms: float
    p99_ms: float


async def _connection(port: int, deadline: float, latencies: list[float], prefix: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = 0
    while time.monotonic() < deadline:
        n += 1
        frame = b"\x0b" + MESSAGE.format(id=f"{prefix}-{n}").encode() + b"\x1c\r"
        started = time.perf_counter()
        writer.write(frame)
        ack = await reader.readuntil(b"\x1c\r")
        latencies.append((time.perf_counter() - started) * 1000)
        if b"MSA|AA" not in ack and b"MSA|CA" not in ack:
            raise SystemExit(f"not accepted: {ack[:200]!r}")
    writer.close()


def load(port: int, connections: int, seconds: float) -> Result:
    latencies: list[float] = []
    run = f"{time.time_ns()}"

    async def main() -> None:
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(_connection(port, deadline, latencies, f"{run}-{c}") for c in range(connections)))

    started = time.monotonic()
    asyncio.run(main())
    elapsed = time.monotonic() - started
    cuts = statistics.quantiles(latencies, n=100)
    return Result(len(latencies) / elapsed, cuts[49], cuts[98])


def _wait_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the reference server exited")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise SystemExit("the reference server did not listen")


@contextlib.contextmanager
def reference(port: int, store: str) -> Iterator[None]:
    script = HERE / "reference_mllp_server.py"
    process = subprocess.Popen([sys.executable, str(script), str(port), store])
    try:
        _wait_port(port, process)
        yield
    finally:
        process.terminate()
        process.wait(15)


def main() -> None:
    rows: list[tuple[str, int, Result]] = []
    mllp_port = free_port()
    with healthway(HEALTHWAY_MLLP_PORT=str(mllp_port)) as hw:
        source = hw.cli("source", "create", "--env", "development", "--name", "bench")
        hw.cli("mllp-peer", "add", "--source", source["id"], "--cidr", "127.0.0.1")
        time.sleep(2.5)  # the listener re-reads peers every 2 s
        for connections in (1, 8):
            rows.append(("healthway MLLP", connections, load(mllp_port, connections, SECONDS)))
    work = Path(tempfile.mkdtemp(prefix="hw-bench-mllp-"))
    for label, store in (("reference (commit each)", str(work / "ref.db")), ("store nothing", "nothing")):
        port = free_port()
        with reference(port, store):
            for connections in (1, 8):
                rows.append((label, connections, load(port, connections, SECONDS)))
    print(f"{'what':<26}{'conns':>6}{'ACKs/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
    for what, connections, r in rows:
        print(f"{what:<26}{connections:>6}{r.acks_per_s:>10.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}")


if __name__ == "__main__":
    main()
