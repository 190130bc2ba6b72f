"""Engine, sessions and migrations for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DataError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from healthway.errors import ConfigurationError, InvalidRequest, StorageUnavailable

MIGRATIONS = Path(__file__).parent / "migrations"
# Our URLs carry no driver (DESIGN §6); these are the drivers we pick.
DRIVERS = {"sqlite": "sqlite+pysqlite", "postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg"}
PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600  # the data dir holds PHI and destination secrets: the owner's alone
UNSTORABLE = "the request holds a value the database cannot store"
_WAKE = "healthway.wake"  # session.info key: call the Database's wakers once this transaction commits
Waker = Callable[[], None]


def wake_after_commit(session: Session) -> None:
    """Have the Database's wakers called once ``session``'s transaction commits (never if it rolls back).

    The one wake-up of the delivery workers: ``storage.queue`` calls this whenever a transaction queues a delivery
    or makes one due, so no writer (intake, replay, resuming a destination, the CLI) has to remember to."""
    session.info[_WAKE] = True


def parse_url(raw: str) -> URL:
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ConfigurationError("HEALTHWAY_DATABASE_URL is not a database URL") from None
    backend = url.drivername.split("+", 1)[0]
    if backend not in DRIVERS:
        raise ConfigurationError(
            f"unsupported database scheme {backend!r} in HEALTHWAY_DATABASE_URL (use sqlite:// or postgresql://)"
        )
    return url.set(drivername=DRIVERS[backend])


def sqlite_file(raw: str) -> Path | None:
    """The file of a SQLite URL (None for PostgreSQL); nothing is opened or created."""
    url = parse_url(raw)
    return Path(url.database) if url.get_backend_name() == "sqlite" and url.database else None


def describe(url: URL) -> str:
    """The URL without its password, for messages."""
    if url.get_backend_name() == "sqlite":
        return f"SQLite database {url.database}"
    return f"PostgreSQL at {url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run while one writer commits; FULL makes each commit durable (acknowledged = on disk).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # Writers take the lock up front (BEGIN IMMEDIATE) and so queue on the busy timeout, instead of failing
    # when a read lock cannot be upgraded; read-only sessions use a plain deferred BEGIN.
    conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("readonly") else "BEGIN IMMEDIATE")


class Database:
    """One engine and its session factory. Use ``session()`` as a unit of work: commit on success."""

    def __init__(self, raw_url: str) -> None:
        self.url = parse_url(raw_url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            self._prepare_sqlite_dir()
            # isolation_level=None hands transaction control to us (see _sqlite_begin).
            # As many pooled connections as request threads (anyio's default is 40), so none is opened per request.
            # hide_parameters: statement parameters (payloads, secrets) never appear in exception texts or logs.
            self.engine: Engine = sa.create_engine(
                self.url,
                connect_args={"check_same_thread": False, "isolation_level": None},
                pool_size=40,
                max_overflow=10,
                hide_parameters=True,
            )
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
        else:
            self.engine = sa.create_engine(
                self.url,
                pool_size=20,
                max_overflow=20,
                pool_pre_ping=True,
                connect_args={"connect_timeout": 5},
                hide_parameters=True,
            )
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._wakers: list[Waker] = []
        event.listen(self._sessions, "after_commit", self._after_commit)
        # SQLite has one writer at a time, and a writer that finds the lock taken sleeps in growing steps (up to
        # 100 ms) before it looks again. Writers of this process therefore queue on a mutex instead, which wakes
        # the next one the moment the previous commits; other processes (a CLI command) still use the timeout.
        self._write_lock: AbstractContextManager[Any] = threading.RLock() if self.is_sqlite else nullcontext()
        self._read_engine = self.engine.execution_options(readonly=True)
        self._read_sessions = sessionmaker(self._read_engine, expire_on_commit=False)

    def _prepare_sqlite_dir(self) -> None:
        if not self.url.database or self.url.database == ":memory:":
            raise ConfigurationError("an in-memory SQLite database cannot be shared; give a file path")
        path = Path(self.url.database)
        try:
            path.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(f"cannot create data directory {path.parent}: {exc.strerror}") from None
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise ConfigurationError(f"data directory {path.parent} is not writable")
        _create_private(path)

    def permission_warnings(self) -> list[str]:
        """What of the SQLite data dir and files others than the owner may read (empty on PostgreSQL)."""
        if not self.is_sqlite or not self.url.database:
            return []
        path = Path(self.url.database)
        candidates = [path.parent, path, *(path.with_name(path.name + s) for s in ("-wal", "-shm"))]
        return [
            f"{p} is readable by others (mode {mode:o}); chmod {'700' if p.is_dir() else '600'} it"
            for p in candidates
            if (mode := _group_or_other_mode(p))
        ]

    def add_waker(self, waker: Waker) -> None:
        """Call ``waker`` (from the committing thread: it must be quick and thread-safe) after every commit of this
        process that queued deliveries (``wake_after_commit``)."""
        self._wakers.append(waker)

    def remove_waker(self, waker: Waker) -> None:
        self._wakers.remove(waker)

    def _after_commit(self, session: Session) -> None:
        if session.info.pop(_WAKE, False):
            for waker in list(self._wakers):
                waker()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: everything inside commits together, or nothing does."""
        with _translated(), self._write_lock, self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A read-only unit of work: on SQLite it does not take the write lock, so it never waits for writers."""
        with _translated(), self._read_sessions() as session, session.begin():
            yield session

    @contextmanager
    def read_connection(self) -> Iterator[sa.Connection]:
        """A read-only Core connection (no ORM session): for the hottest reads."""
        with _translated(), self._read_engine.connect() as conn:
            yield conn

    def check_reachable(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise ConfigurationError(f"cannot connect to {describe(self.url)}: {_first_line(exc)}") from None

    def is_ready(self) -> bool:
        try:
            self.check_reachable()
        except ConfigurationError:
            return False
        return True

    # -- migrations ---------------------------------------------------------------------------------------
    def _alembic_config(self) -> Config:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["engine"] = self.engine
        return config

    def current_revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head_revision(self) -> str | None:
        return ScriptDirectory.from_config(self._alembic_config()).get_current_head()

    def has_schema(self) -> bool:
        """Whether Healthway's tables are there (raises ConfigurationError when the server cannot be reached)."""
        self.check_reachable()
        return self.current_revision() is not None

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent)."""
        self.check_reachable()
        if self.current_revision() != self.head_revision():
            command.upgrade(self._alembic_config(), "head")

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def _translated() -> Iterator[None]:
    """Database failures as Healthway errors: unreachable → 503; a value the database refuses (a NUL in a text
    value on PostgreSQL, say) → 400, for it is the caller's input. Neither message repeats a parameter."""
    try:
        yield
    except OperationalError as exc:
        raise StorageUnavailable(f"database unavailable: {_first_line(exc)}") from exc
    except DataError:
        raise InvalidRequest(UNSTORABLE) from None


def _create_private(path: Path) -> None:
    """Create the SQLite file 0600 before SQLite does: SQLite gives its -wal and -shm files the database file's
    mode, so they are private too whatever the umask. An existing file is left alone (never opened here: closing
    a descriptor would drop this process's SQLite locks)."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE))
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigurationError(f"cannot create {path}: {exc.strerror}") from None


def _group_or_other_mode(path: Path) -> int:
    """The permission bits of ``path`` when group or others have any; 0 when private or absent."""
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return 0
    return mode if mode & 0o077 else 0


def _first_line(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip().splitlines()
    return text[0] if text else type(original).__name__
