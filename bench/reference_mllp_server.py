"""Reference for bench/mllp.py: a minimal asyncio MLLP server that commits each message to SQLite (WAL,
synchronous=FULL) before its ACK, or with ``nothing`` stores nothing (what the load client can drive).
Usage: python reference_mllp_server.py PORT DBPATH|nothing"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import uuid

ACK = b"\x0bMSH|^~\\&|REF|REF|BENCH|BENCH|20250101||ACK|1|P|2.5.1\rMSA|AA|1\r\x1c\r"


def store(conn: sqlite3.Connection | None, message: bytes) -> None:
    if conn is not None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO logs VALUES (?, ?)", (str(uuid.uuid4()), message))
        conn.execute("COMMIT")


async def main(port: int, path: str) -> None:
    conn = None
    if path != "nothing":
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE IF NOT EXISTS logs (id TEXT PRIMARY KEY, payload BLOB)")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                frame = await reader.readuntil(b"\x1c\r")
                store(conn, frame[1:-2])
                writer.write(ACK)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
