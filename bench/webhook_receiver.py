"""A minimal keep-alive HTTP/1.1 webhook receiver for the delivery benchmark, run as its own process so that its
answers never wait behind the load generator.

``POST`` anything: 200, and the first arrival time of each ``Healthway-Log-Id`` is kept (``time.perf_counter``,
CLOCK_MONOTONIC, comparable across processes on Linux). ``GET /stats`` → ``{"count", "arrivals": {log id: t}}``;
``GET /reset`` forgets them; ``GET /ready`` → 200.
Usage: python bench/webhook_receiver.py PORT
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

arrivals: dict[str, float] = {}
received = [0]  # requests answered (a list: the handler updates it in place)


def answer(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while head := await reader.readuntil(b"\r\n\r\n"):
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            await reader.readexactly(int(headers.get("content-length", "0")))
            path = lines[0].split(" ")[1]
            if path == "/stats":
                writer.write(answer(json.dumps({"count": received[0], "arrivals": arrivals}).encode()))
            elif path == "/ready":
                writer.write(answer(b""))
            elif path == "/reset":
                arrivals.clear()
                received[0] = 0
                writer.write(answer(b""))
            else:
                if log_id := headers.get("healthway-log-id"):
                    arrivals.setdefault(log_id, time.perf_counter())
                received[0] += 1
                writer.write(answer(b""))
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
