"""End-to-end delivery: SEND (POST /endpoint) → webhook receipt, both on loopback.

Measures deliveries/s with 1 and with 8 FIFO subscriptions (each its own webhook destination), and the latency
from the 202 to the receipt at steady rates, on SQLite and (when PostgreSQL is installed) on PostgreSQL. The
reference line is the same load generator posting straight to the receiver. The receiver runs as its own process.
Usage: .venv/bin/python -m bench.delivery [messages] [steady-seconds]
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import httpx

from bench.common import Instance, free_port, healthway, python_server

MESSAGES = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
STEADY_SECONDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
RATES = (100, 500)  # the target is p99 < 100 ms at 500 msg/s; 100 msg/s shows the unloaded latency
CONNECTIONS = 32
BODY = json.dumps({"Meta": {"DataModel": "PatientAdmin", "EventType": "Arrival"}, "Note": "x" * 900}).encode()


RECEIVER = Path(__file__).with_name("webhook_receiver.py")


class Receiver:
    """The webhook receiver process (bench/webhook_receiver.py) on a free port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._client = httpx.Client(base_url=f"http://127.0.0.1:{port}")

    def count(self) -> int:
        return int(self._client.get("/stats").json()["count"])

    def arrivals(self) -> dict[str, float]:
        return dict(self._client.get("/stats").json()["arrivals"])

    def reset(self) -> None:
        self._client.get("/reset")


@contextmanager
def receiver() -> Iterator[Receiver]:
    port = free_port()
    with python_server(RECEIVER, port):
        yield Receiver(port)


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


def client(base_url: str, headers: dict[str, str] | None = None) -> aiohttp.ClientSession:
    """The load generator's HTTP client: aiohttp, which leaves more of the machine's CPU to the server than httpx."""
    return aiohttp.ClientSession(base_url, headers=headers, timeout=aiohttp.ClientTimeout(total=30))


async def send(session: aiohttp.ClientSession, sent: dict[str, float]) -> None:
    """One SEND; ``sent`` gets its log ID and when the request started (so a receipt is never "before" it, however
    late the load generator reads the 202)."""
    started = time.perf_counter()
    async with session.post("/endpoint", data=BODY) as response:
        answer = await response.json()
    assert response.status == 202, answer
    sent[answer["Meta"]["Logs"][0]["ID"]] = started


async def throughput(hw: Instance, headers: dict[str, str], receiver: Receiver, subscriptions: int) -> float:
    """Deliveries per second, from the first SEND until the last receipt.

    CONNECTIONS senders, each with its own connection, sending one message after another.
    """
    sent: dict[str, float] = {}
    started = time.perf_counter()

    async def sender(count: int) -> None:
        async with client(hw.base_url, headers) as session:
            for _ in range(count):
                await send(session, sent)

    share, rest = divmod(MESSAGES, CONNECTIONS)
    await asyncio.gather(*(sender(share + (n < rest)) for n in range(CONNECTIONS)))
    accepted = time.perf_counter() - started
    print(f"  accepted {MESSAGES} in {accepted:.1f} s ({MESSAGES / accepted:.0f} msg/s)", file=sys.stderr)
    while receiver.count() < MESSAGES * subscriptions:  # noqa: ASYNC110 (the receiver is another process)
        await asyncio.sleep(0.01)
    return MESSAGES * subscriptions / (time.perf_counter() - started)


async def steady(hw: Instance, headers: dict[str, str], receiver: Receiver, rate: int) -> str:
    """p50 and p99 milliseconds from SEND to receipt (an upper bound of 202→receipt: it includes the intake) at a
    steady ``rate`` messages/s, the rate the load generator kept up, and how many arrived."""
    sent: dict[str, float] = {}
    receiver.reset()
    async with client(hw.base_url, headers) as session:
        tasks, start = [], time.perf_counter()
        for n in range(rate * STEADY_SECONDS):
            await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(send(session, sent)))
        kept = len(tasks) / (time.perf_counter() - start)
        await asyncio.gather(*tasks)
    deadline = time.perf_counter() + 30
    while len(arrivals := receiver.arrivals()) < len(sent) and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    latencies = sorted((arrivals[i] - t) * 1000 for i, t in sent.items() if i in arrivals)
    p50, p99 = statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]
    return f"{p50:>8.1f}{p99:>8.1f}  (sent at {kept:.0f} msg/s; {len(latencies)}/{len(sent)} arrived within 30 s)"


async def reference(receiver: Receiver) -> float:
    """POSTs/s straight to the receiver with the same load generator: what loopback HTTP costs on this machine."""
    started = time.perf_counter()

    async def sender(count: int) -> None:
        async with client(f"http://127.0.0.1:{receiver.port}") as session:
            for _ in range(count):
                async with session.post("/hook", data=BODY, headers={"content-type": "application/json"}) as answer:
                    assert answer.status == 200

    await asyncio.gather(*(sender(MESSAGES // CONNECTIONS) for _ in range(CONNECTIONS)))
    return MESSAGES // CONNECTIONS * CONNECTIONS / (time.perf_counter() - started)


def run(label: str, **settings: str) -> list[str]:
    rows = []
    for subscriptions in (1, 8):
        # The receiver listens on 127.0.0.1 over plain HTTP: the operator's opt-ins allow that.
        opt_ins = {"HEALTHWAY_ALLOW_LOOPBACK_DESTINATIONS": "1", "HEALTHWAY_ALLOW_HTTP_DESTINATIONS": "1"}
        with receiver() as webhooks, healthway(**opt_ins, **settings) as hw:
            headers = setup(hw, webhooks, subscriptions)
            print(f"{label}: {subscriptions} subscription(s), {MESSAGES} messages...", file=sys.stderr)
            rate = asyncio.run(throughput(hw, headers, webhooks, subscriptions))
            rows.append(f"{label:<12}{subscriptions:>5} subscription(s): {rate:>6.0f} deliveries/s")
            if subscriptions == 1:
                for steady_rate in RATES:
                    latency = asyncio.run(steady(hw, headers, webhooks, steady_rate))
                    rows.append(f"{label:<12}SEND→receipt at {steady_rate} msg/s, p50/p99 ms:{latency}")
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
    with receiver() as webhooks:
        direct = asyncio.run(reference(webhooks))
    rows = [f"{'reference':<12}POSTs/s straight to the receiver, same load generator: {direct:.0f}"]
    rows += run("SQLite")
    with postgres() as url:
        rows += run("PostgreSQL", HEALTHWAY_DATABASE_URL=url) if url else ["PostgreSQL  (not installed: skipped)"]
    print("\n".join(rows))


if __name__ == "__main__":
    main()
