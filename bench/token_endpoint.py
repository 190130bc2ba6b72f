"""Token endpoint benchmark: ``POST /v2/auth/token`` of a real ``healthway serve`` (SQLite, tokens persisted)
against a bare Starlette + joserfc reference doing only parse + verify + issue, in the same run.

    .venv/bin/python bench/token_endpoint.py [--assertions 2000] [--connections 64]

For each of RS384 and ES384 it pre-signs N assertions (unique jti each), then sends them over C keep-alive
connections as fast as they are answered, and prints tokens/s, p50 and p99. The load generator is a minimal
asyncio HTTP/1.1 client (httpx would cost more CPU than the server on a 2-core machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

HERE = Path(__file__).resolve()
VENV_BIN = Path(sys.executable).parent
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, path: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                if b" 200 " in s.recv(200):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("server did not become ready")


# -- the reference: parse + joserfc verify + issue, nothing else ----------------------------------------------


def reference_app(public_jwks: dict[str, Any]) -> Any:
    import hashlib  # noqa: PLC0415

    from joserfc import jws  # noqa: PLC0415
    from joserfc.jwk import KeySet  # noqa: PLC0415
    from starlette.applications import Starlette  # noqa: PLC0415
    from starlette.requests import Request  # noqa: PLC0415
    from starlette.responses import Response  # noqa: PLC0415
    from starlette.routing import Route  # noqa: PLC0415

    keys = KeySet.import_key_set(public_jwks)
    issued: dict[str, float] = {}

    async def token(request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        obj = jws.deserialize_compact(form["client_assertion"], keys, algorithms=["RS384", "ES384"])
        claims = json.loads(obj.payload)
        access = "hwat_" + secrets.token_urlsafe(32)
        issued[hashlib.sha256(access.encode()).hexdigest()] = claims["exp"]
        body = json.dumps({"access_token": access, "token_type": "Bearer", "expires_in": 300, "scope": ""})
        return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})

    async def ready(_request: Request) -> Response:
        return Response("ok")

    return Starlette(routes=[Route("/v2/auth/token", token, methods=["POST"]), Route("/readyz", ready)])


def run_reference(port: int, jwks_path: str) -> None:
    import uvicorn  # noqa: PLC0415

    app = reference_app(json.loads(Path(jwks_path).read_text()))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- setup of the real server -----------------------------------------------------------------------------------


def healthway(env: dict[str, str], *args: str) -> dict[str, Any]:
    out = subprocess.run([str(VENV_BIN / "healthway"), *args, "--json"], env=env, capture_output=True, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def make_pairs() -> dict[str, Any]:
    from healthway.testing import make_key_pair  # noqa: PLC0415

    return {alg: make_key_pair(alg) for alg in ("RS384", "ES384")}


def sign_all(pair: Any, client_id: str, audience: str, n: int) -> list[bytes]:
    from healthway.testing import assertion_claims  # noqa: PLC0415

    now = time.time()
    bodies = []
    for _ in range(n):
        assertion = pair.sign(assertion_claims(client_id, audience, now=now, lifetime=280))
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        }
        bodies.append(urlencode(form).encode())
    return bodies


# -- the load generator -----------------------------------------------------------------------------------------


async def one_connection(port: int, bodies: list[bytes], latencies: list[float], statuses: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while bodies:
            body = bodies.pop()
            head = (
                f"POST /v2/auth/token HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            started = time.perf_counter()
            writer.write(head.encode() + body)
            headers = await reader.readuntil(b"\r\n\r\n")
            length = int(
                next(
                    line.split(b":")[1] for line in headers.split(b"\r\n") if line.lower().startswith(b"content-length")
                )
            )
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            statuses.append(int(headers.split(b" ", 2)[1]))
    finally:
        writer.close()
        await writer.wait_closed()


async def load(port: int, bodies: list[bytes], connections: int) -> dict[str, float]:
    latencies: list[float] = []
    statuses: list[int] = []
    queue = list(bodies)
    started = time.perf_counter()
    await asyncio.gather(*(one_connection(port, queue, latencies, statuses) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    ok = sum(1 for s in statuses if s == 200)
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "ok": ok,
        "total": len(statuses),
        "rate": ok / elapsed,
        "p50": quantiles[49] * 1000,
        "p99": quantiles[98] * 1000,
    }


def report(label: str, result: dict[str, float]) -> None:
    print(
        f"{label:<34} {result['rate']:>9.0f} tokens/s   p50 {result['p50']:>6.1f} ms   p99 {result['p99']:>6.1f} ms"
        f"   ({result['ok']:.0f}/{result['total']:.0f} ok)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assertions", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--reference-server", nargs=2, metavar=("PORT", "JWKS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference_server:
        run_reference(int(args.reference_server[0]), args.reference_server[1])
        return
    with tempfile.TemporaryDirectory(prefix="hw-bench-") as tmp:
        bench(Path(tmp), args.assertions, args.connections)


def bench(tmp: Path, n: int, connections: int) -> None:
    pairs = make_pairs()
    all_jwks = {"keys": [p.public_jwk for p in pairs.values()]}
    (tmp / "all.json").write_text(json.dumps(all_jwks))
    port, ref_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHWAY_")}
    env |= {
        "HEALTHWAY_DATA_DIR": str(tmp / "data"),
        "HEALTHWAY_HTTP_PORT": str(port),
        "HEALTHWAY_MLLP_PORT": "0",
        "HEALTHWAY_SFTP_PORT": "0",
        "HEALTHWAY_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "HEALTHWAY_LOG_LEVEL": "warning",
    }
    healthway(env, "init", "--org", "Bench", "--admin-email", "bench@example.org")
    clients = {}
    for alg, pair in pairs.items():
        (tmp / f"{alg}.json").write_text(json.dumps(pair.public_jwks))
        clients[alg] = healthway(
            env, "key", "create-oauth", "--env", "development", "--jwks-file", str(tmp / f"{alg}.json")
        )["client_id"]
    audience = f"http://127.0.0.1:{port}/v2/auth/token"
    print(f"{n} assertions per algorithm, {connections} connections, {os.cpu_count()} CPUs", flush=True)
    servers = {
        "reference (Starlette+joserfc)": (
            [sys.executable, str(HERE), "--reference-server", str(ref_port), str(tmp / "all.json")],
            ref_port,
        ),
        "healthway serve (SQLite)": ([str(VENV_BIN / "healthway"), "serve"], port),
    }
    for label, (command, server_port) in servers.items():
        log = (tmp / f"{server_port}.log").open("wb")
        process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        try:
            wait_ready(server_port, "/readyz", process)
            for alg, pair in pairs.items():
                bodies = sign_all(pair, clients[alg], audience, n + 100)
                asyncio.run(load(server_port, bodies[:100], min(connections, 16)))  # warm-up (caches, connections)
                report(f"{label} {alg}", asyncio.run(load(server_port, bodies[100:], connections)))
        finally:
            process.terminate()
            process.wait(10)
            log.close()


if __name__ == "__main__":
    main()
