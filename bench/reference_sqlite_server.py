"""Reference for bench/intake.py: a bare Starlette route doing one SQLite insert + commit per request
(WAL, synchronous=FULL), served by uvicorn like Healthway. Usage: python reference_sqlite_server.py PORT DBPATH"""

from __future__ import annotations

import sqlite3
import sys
import threading
import uuid

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

local = threading.local()


def connection() -> sqlite3.Connection:
    if not hasattr(local, "conn"):
        conn = sqlite3.connect(sys.argv[2], isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE IF NOT EXISTS logs (id TEXT PRIMARY KEY, payload BLOB)")
        local.conn = conn
    return local.conn


def insert(body: bytes) -> str:
    log_id = str(uuid.uuid4())
    conn = connection()
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO logs VALUES (?, ?)", (log_id, body))
    conn.execute("COMMIT")
    return log_id


async def endpoint(request: Request) -> JSONResponse:
    log_id = await run_in_threadpool(insert, await request.body())
    return JSONResponse({"Meta": {"Logs": [{"ID": log_id}]}}, status_code=202)


async def ready(_: Request) -> JSONResponse:
    return JSONResponse({})


app = Starlette(routes=[Route("/endpoint", endpoint, methods=["POST"]), Route("/ready", ready)])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
