"""MLLP destinations' TLS material by value: ca_file/cert_file/key_file paths become ca_pem/cert_pem/key_pem text

Revision ID: 0003c
Revises: 0003b
Create Date: 2026-12-04 10:00:00.000000

A data migration, no schema change. Each path stored by an older version is read once, here, and its PEM content
stored in its place; from then on no running server opens a path a caller named (issue 14). A path is left alone,
and the destination's attempts then say that TLS files are no longer read, when it is not a regular file of at most
100 kB holding PEM text, or when it is the SQLite database or one of its companion files, or lies in the
database's directory: opening and closing those would drop SQLite's locks, the very bug this closes.
Downgrade keeps the PEM text (the old code ignores it: such destinations connect without their TLS material).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003c"
down_revision: str | None = "0003b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FIELDS = {"ca_file": "ca_pem", "cert_file": "cert_pem", "key_file": "key_pem"}
MAX_BYTES = 100_000
destinations = sa.table(
    "destinations", sa.column("id", sa.String), sa.column("kind", sa.String), sa.column("config", sa.JSON)
)


def _protected() -> tuple[str | None, set[tuple[int, int]]]:
    """The SQLite database's directory and the (device, inode) of its files, which must never be opened here."""
    database = op.get_bind().engine.url.database
    if op.get_bind().dialect.name != "sqlite" or not database or database == ":memory:":
        return None, set()
    database = os.path.realpath(database)
    inodes = set()
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            info = os.stat(database + suffix)  # stat opens nothing
        except OSError:
            continue
        inodes.add((info.st_dev, info.st_ino))
    return os.path.dirname(database), inodes


def _read_pem(path: Any, directory: str | None, inodes: set[tuple[int, int]]) -> str | None:
    if not isinstance(path, str) or not path:
        return None
    real = os.path.realpath(path)
    try:
        info = os.stat(real)
    except OSError:
        return None
    inside = directory is not None and os.path.commonpath([directory, real]) == directory
    if inside or (info.st_dev, info.st_ino) in inodes or not os.path.isfile(real) or info.st_size > MAX_BYTES:
        return None
    try:
        with open(real, encoding="ascii") as file:
            text = file.read(MAX_BYTES + 1)
    except (OSError, UnicodeDecodeError):
        return None
    return text if "-----BEGIN " in text and len(text) <= MAX_BYTES else None


def _converted(config: dict[str, Any], directory: str | None, inodes: set[tuple[int, int]]) -> dict[str, Any] | None:
    """The config with PEM text in place of paths, or None when any path cannot be converted."""
    paths = {key: config[key] for key in FIELDS if config.get(key)}
    texts = {FIELDS[key]: _read_pem(path, directory, inodes) for key, path in paths.items()}
    if not paths or None in texts.values():
        return None
    return {k: v for k, v in config.items() if k not in FIELDS} | texts


def upgrade() -> None:
    bind = op.get_bind()
    directory, inodes = _protected()
    rows = bind.execute(sa.select(destinations.c.id, destinations.c.config).where(destinations.c.kind == "mllp"))
    for destination_id, config in rows.all():
        new = _converted(dict(config or {}), directory, inodes)
        if new is not None:
            bind.execute(destinations.update().where(destinations.c.id == destination_id).values(config=new))


def downgrade() -> None:
    pass
