"""The replay cache of client assertion ids, in the database (so it survives restarts and is shared by nodes).

A ``jti`` is remembered per client until the assertion's own ``exp`` plus ``RETENTION_MARGIN``. Two rules close
the gap between checking an assertion and writing its jti (a batch may be written a few ms after the check):

- a row is taken over only when it had expired at the *verification* time of the new use, never at write
  time: an assertion verified just before its ``exp`` finds its first use still there;
- rows are purged only ``RETENTION_MARGIN`` after their ``exp``, so a purge running in between (or on a node
  whose clock is a little ahead) cannot delete the row a late write still needs.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from healthway.storage.models import UsedAssertion

RETENTION_MARGIN = timedelta(seconds=60)


def remember(session: Session, *, client_id: str, jti: str, expires_at: datetime, verified_at: datetime) -> bool:
    """Record the jti; False when this client already used it and that use had not expired at ``verified_at``
    (when the new assertion was checked): a replay.

    One statement, race-free on both databases: the insert wins, or it takes over only an expired row.
    """
    table = cast(sa.Table, UsedAssertion.__table__)
    insert = postgresql.insert(table) if session.get_bind().dialect.name == "postgresql" else sqlite.insert(table)
    statement = insert.values(client_id=client_id, jti=jti, expires_at=expires_at).on_conflict_do_update(
        index_elements=[table.c.client_id, table.c.jti],
        set_={"expires_at": expires_at},
        where=table.c.expires_at <= verified_at,
    )
    # RETURNING (not rowcount, which drivers report differently for upserts): a row back means recorded.
    # On the connection: a Core statement needs none of the ORM's bulk-insert machinery (hot path).
    return session.connection().execute(statement.returning(table.c.jti)).first() is not None


def purge(session: Session, *, now: datetime) -> int:
    """Delete the rows whose assertions expired more than ``RETENTION_MARGIN`` ago; returns how many."""
    result = session.execute(sa.delete(UsedAssertion).where(UsedAssertion.expires_at <= now - RETENTION_MARGIN))
    return int(result.rowcount)  # type: ignore[attr-defined]
