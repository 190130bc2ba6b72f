"""PostgreSQL LISTEN: wake this node's worker when any node commits new deliveries (``route`` sends NOTIFY)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg
import structlog

from healthway.services.deliveries import PG_CHANNEL
from healthway.storage.db import Database

log = structlog.get_logger("healthway.delivery")
CHECK_SECONDS = 0.5  # how often the thread looks at the stop flag


def _conninfo(db: Database) -> str:
    return db.url.set(drivername="postgresql").render_as_string(hide_password=False)


def _listen(db: Database, wake: Callable[[], None], stopping: Callable[[], bool]) -> None:
    while not stopping():
        try:
            with psycopg.connect(_conninfo(db), autocommit=True, connect_timeout=5) as conn:
                conn.execute(f"LISTEN {PG_CHANNEL}")
                wake()  # anything committed while we were not listening
                while not stopping():
                    for _ in conn.notifies(timeout=CHECK_SECONDS, stop_after=1):
                        wake()
        except psycopg.Error as exc:
            log.warning("delivery LISTEN connection lost; the poll covers until it is back", error=type(exc).__name__)
            time.sleep(CHECK_SECONDS)


def start_listener(db: Database, wake: Callable[[], None], stopping: Callable[[], bool]) -> threading.Thread:
    thread = threading.Thread(target=_listen, args=(db, wake, stopping), name="delivery-listen", daemon=True)
    thread.start()
    return thread
