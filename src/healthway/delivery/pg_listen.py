"""PostgreSQL LISTEN: wake this node's worker when any node or process commits deliveries (``storage.queue``
sends NOTIFY in the transaction that queues them)."""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Callable

import psycopg
import structlog

from healthway.storage.db import Database
from healthway.storage.queue import PG_CHANNEL

log = structlog.get_logger("healthway.delivery")
RECONNECT_SECONDS = 0.5  # pause before connecting again after the connection was lost
STOP_JOIN_SECONDS = 6.0  # a connect in progress ends within its connect_timeout (5 s)


def _conninfo(db: Database) -> str:
    return db.url.set(drivername="postgresql").render_as_string(hide_password=False)


class PgListener:
    """A thread holding one LISTEN connection. ``stop`` ends it at once: the thread waits on the connection's
    socket and on a pipe that ``stop`` writes to, never on a timer."""

    def __init__(self, db: Database, wake: Callable[[], None]) -> None:
        self._db, self._wake = db, wake
        self._stop_read, self._stop_write = os.pipe()
        self._thread = threading.Thread(target=self._run, name="delivery-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        os.write(self._stop_write, b"x")
        self._thread.join(STOP_JOIN_SECONDS)
        if not self._thread.is_alive():  # else it may still select on the pipe
            os.close(self._stop_read)
            os.close(self._stop_write)

    def _stopped_within(self, seconds: float | None, conn: psycopg.Connection[object] | None = None) -> bool:
        """Wait until stop, data on ``conn``, or ``seconds``; whether stop was asked."""
        watched = [self._stop_read] if conn is None else [self._stop_read, conn.fileno()]
        ready, _, _ = select.select(watched, [], [], seconds)
        return self._stop_read in ready

    def _run(self) -> None:
        while True:
            try:
                self._listen()
            except psycopg.Error as exc:
                log.warning(
                    "delivery LISTEN connection lost; the capped sleep covers until it is back",
                    error=type(exc).__name__,
                )
            else:
                return  # stopped
            if self._stopped_within(RECONNECT_SECONDS):
                return

    def _listen(self) -> None:
        """Listen until stop; raises psycopg.Error when the connection fails."""
        with psycopg.connect(_conninfo(self._db), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"LISTEN {PG_CHANNEL}")
            self._wake()  # anything committed while we were not listening
            while not self._stopped_within(None, conn):
                if _drained(conn):
                    self._wake()  # once, however many notifications arrived together


def _drained(conn: psycopg.Connection[object]) -> int:
    """Read what the server sent; how many notifications it held. Raises OperationalError when it is gone."""
    conn.pgconn.consume_input()
    count = 0
    while conn.pgconn.notifies() is not None:
        count += 1
    return count
