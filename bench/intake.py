"""Durable SEND throughput and latency of POST /endpoint at 64 connections, 1 KB and 100 KB bodies, on SQLite,
next to a reference measured in the same run (a bare Starlette route doing one SQLite insert+commit per request
with synchronous=FULL). Needs wrk (apt-get install -y wrk). Usage: .venv/bin/python bench/intake.py [seconds]"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import httpx

from bench.common import free_port, healthway, python_server, wrk

SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
HERE = Path(__file__).parent


def body_of(size: int) -> bytes:
    head = {"Meta": {"DataModel": "PatientAdmin", "EventType": "NewPatient"}, "Note": ""}
    filler = size - len(json.dumps(head))
    head["Note"] = "x" * filler
    return json.dumps(head).encode()


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="hw-bench-intake-"))
    bodies = {"1 KB": work / "1k.json", "100 KB": work / "100k.json"}
    bodies["1 KB"].write_bytes(body_of(1024))
    bodies["100 KB"].write_bytes(body_of(100 * 1024))
    rows = []
    with healthway() as hw:
        source = hw.cli("source", "create", "--env", "development", "--name", "bench")
        key = hw.cli("key", "create-legacy", "--source", source["id"])
        token = httpx.post(f"{hw.base_url}/auth/authenticate", json={"apiKey": key["api_key"], "secret": key["secret"]})
        headers = {"Authorization": f"Bearer {token.json()['accessToken']}", "Content-Type": "application/json"}
        for label, path in bodies.items():
            result = wrk(f"{hw.base_url}/endpoint", body_file=path, headers=headers, seconds=SECONDS)
            rows.append(("healthway /endpoint", label, result))
    port = free_port()
    with python_server(HERE / "reference_sqlite_server.py", port, str(work / "reference.db")):
        for label, path in bodies.items():
            result = wrk(f"http://127.0.0.1:{port}/endpoint", body_file=path, headers={}, seconds=SECONDS)
            rows.append(("reference (insert+commit each)", label, result))
    print(f"{'what':<32}{'body':>8}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}")
    for what, label, r in rows:
        print(f"{what:<32}{label:>8}{r.requests_per_s:>10.0f}{r.p50_ms:>9.1f}{r.p99_ms:>9.1f}{r.non_2xx:>9}")


if __name__ == "__main__":
    main()
