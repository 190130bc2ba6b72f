"""Shared fixtures: a throwaway PostgreSQL for the session, and databases on both backends."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from healthway.storage.db import Database
from healthway.storage.models import Base

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
BACKENDS = ["sqlite", "postgresql"]


def _free_port() -> int:
    """A port nobody listens on now: concurrent test runs on one machine must not share PostgreSQL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A private PostgreSQL server on 127.0.0.1 for this test session (the project's own pg-start.sh)."""
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        pytest.fail("PostgreSQL is not installed: run `bash scripts/install.sh --test`")
    env = {**os.environ, "PGPORT": str(_free_port())}
    run = subprocess.run(["bash", SCRIPTS / "pg-start.sh"], capture_output=True, text=True, env=env, check=False)
    if run.returncode != 0:
        pytest.fail(f"pg-start.sh failed:\n{run.stderr}")
    values = dict(line.split("=", 1) for line in run.stdout.splitlines() if "=" in line)
    yield values["DATABASE_URL"]
    subprocess.run(["bash", values["PG_STOP"]], check=True)


@pytest.fixture(scope="session")
def _postgres_db(postgres_url: str) -> Iterator[Database]:
    db = Database(postgres_url)
    db.migrate()
    yield db
    db.dispose()


def _truncate(db: Database) -> None:
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with db.engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, made once per session and copied per test (Alembic per test costs more)."""
    path = tmp_path_factory.mktemp("template") / "healthway.db"
    database = Database(f"sqlite:///{path}")
    database.migrate()
    database.dispose()  # the last connection to close checkpoints the WAL into the file
    return path


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "healthway.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        database = Database(f"sqlite:///{path}")
        yield database
        database.dispose()
    else:
        database = request.getfixturevalue("_postgres_db")
        _truncate(database)
        yield database


@pytest.fixture
def database_url(db: Database) -> str:
    """The URL of ``db`` as a user would write it (for CLI and server subprocesses)."""
    return db.url.set(drivername=db.url.get_backend_name()).render_as_string(hide_password=False)
