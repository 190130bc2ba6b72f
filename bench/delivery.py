"""End-to-end delivery: SEND (POST /endpoint) → webhook receipt, both on loopback.

Measures deliveries/s with 1 and with 8 FIFO subscriptions (each its own webhook destination), and the latency
from the 202 to the receipt at a steady 500 messages/s, on SQLite and (when PostgreSQL is installed) on PostgreSQL.
Usage: .venv/bin/python bench/delivery.py [messages] [steady-seconds]
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.common import Instance, free_port, healthway

MESSAGES = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
STEADY_SECONDS = int(sys.argv[2]) if len(sys.argv) > 2 else 10
RATE = 500
BODY = json.dumps({"Meta": {"DataModel": "PatientAdmin", "EventType": "Arrival"}, "Note": "x" * 900}).encode()


class Receiver:
    """A minimal keep-alive HTTP/1.1 server on its own thread: records when each (log, destination) arrived."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrivals: dict[str, float] = {}  # log id → first arrival (perf_counter)
        self.count = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port, backlog=1024))
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                headers = dict(line.split(":", 1) for line in head.decode("latin-1").split("\r\n")[1:] if ":" in line)
                headers = {k.strip().lower(): v.strip() for k, v in headers.items()}
                await reader.readexactly(int(headers.get("content-length", "0")))
                self.arrivals.setdefault(headers["healthway-log-id"], time.perf_counter())
                self.count += 1
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


def setup(hw: Instance, receiver: Receiver, subscriptions: int) -> dict[str, str]:
    source = hw.cli("source", "create", "--env", "development", "--name", "bench")
    for n in range(subscriptions):
        url = f"http://127.0.0.1:{receiver.port}/hook/{n}"
        dest = hw.cli(
            "destination", "create", "--env", "development", "--name", f"d{n}", "--kind", "webhook", "--url", url
        )
        hw.cli("subscription", "create", "--source", source["id"], "--destination", dest["id"])
    key = hw.cli("key", "create-legacy", "--source", source["id"])
    auth = httpx.post(f"{hw.base_url}/auth/authenticate", json={"apiKey": key["api_key"], "secret": key["secret"]})
    return {"Authorization": f"Bearer {auth.json()['accessToken']}", "Content-Type": "application/json"}


async def send(client: httpx.AsyncClient, sent: dict[str, float]) -> None:
    response = await client.post("/endpoint", content=BODY)
    assert response.status_code == 202, response.text
    sent[response.json()["Meta"]["Logs"][0]["ID"]] = time.perf_counter()


async def throughput(hw: Instance, headers: dict[str, str], receiver: Receiver, subscriptions: int) -> float:
    """Deliveries per second, from the first SEND until the last receipt."""
    sent: dict[str, float] = {}
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=hw.base_url, headers=headers, limits=limits, timeout=30) as client:
        started, queue = time.perf_counter(), asyncio.Semaphore(64)

        async def one() -> None:
            async with queue:
                await send(client, sent)

        await asyncio.gather(*(one() for _ in range(MESSAGES)))
    while receiver.count < MESSAGES * subscriptions:  # noqa: ASYNC110 (the receiver runs on another thread)
        await asyncio.sleep(0.01)
    return MESSAGES * subscriptions / (time.perf_counter() - started)


async def steady(hw: Instance, headers: dict[str, str], receiver: Receiver) -> tuple[float, float]:
    """(p50, p99) milliseconds from 202 to receipt at a steady RATE messages/s."""
    sent: dict[str, float] = {}
    receiver.arrivals.clear()
    async with httpx.AsyncClient(base_url=hw.base_url, headers=headers, timeout=30) as client:
        tasks, start = [], time.perf_counter()
        for n in range(RATE * STEADY_SECONDS):
            await asyncio.sleep(max(0.0, start + n / RATE - time.perf_counter()))
            tasks.append(asyncio.create_task(send(client, sent)))
        await asyncio.gather(*tasks)
    deadline = time.perf_counter() + 30
    while len(receiver.arrivals) < len(sent) and time.perf_counter() < deadline:  # noqa: ASYNC110 (as above)
        await asyncio.sleep(0.01)
    latencies = sorted((receiver.arrivals[i] - t) * 1000 for i, t in sent.items() if i in receiver.arrivals)
    return statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]


def run(label: str, **settings: str) -> list[str]:
    rows = []
    for subscriptions in (1, 8):
        receiver = Receiver()
        with healthway(**settings) as hw:
            headers = setup(hw, receiver, subscriptions)
            print(f"{label}: {subscriptions} subscription(s), {MESSAGES} messages...", file=sys.stderr)
            rate = asyncio.run(throughput(hw, headers, receiver, subscriptions))
            line = f"{label:<12}{subscriptions:>6}{rate:>14.0f}"
            if subscriptions == 1:
                p50, p99 = asyncio.run(steady(hw, headers, receiver))
                line += f"{p50:>12.1f}{p99:>12.1f}"
            rows.append(line)
    return rows


@contextmanager
def postgres() -> Iterator[str | None]:
    """A throwaway PostgreSQL (scripts/pg-start.sh), or None when PostgreSQL is not installed."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "pg-start.sh"
    env = {**os.environ, "PGPORT": str(free_port())}
    started = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, check=False)
    if started.returncode != 0:
        yield None
        return
    values = dict(line.split("=", 1) for line in started.stdout.splitlines() if "=" in line)
    try:
        yield values["DATABASE_URL"]
    finally:
        subprocess.run(["bash", values["PG_STOP"]], check=False)


def main() -> None:
    rows = run("SQLite")
    with postgres() as url:
        rows += run("PostgreSQL", HEALTHWAY_DATABASE_URL=url) if url else ["PostgreSQL  (not installed: skipped)"]
    print(f"{'database':<12}{'subs':>6}{'deliveries/s':>14}{'p50 ms':>12}{'p99 ms':>12}")
    print(f"{'':<32}(202→receipt at {RATE} msg/s, 1 subscription)")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
