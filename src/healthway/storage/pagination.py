"""Keyset pagination on (created_at, id): stable under inserts, no OFFSET scans, an opaque cursor for clients."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import InstrumentedAttribute, Session

from healthway.errors import InvalidRequest

T = TypeVar("T")
MAX_LIMIT = 500


def encode_cursor(created_at: datetime, row_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([created_at.isoformat(), row_id])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, row_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(created), str(row_id)
    except (ValueError, TypeError):
        raise InvalidRequest("invalid cursor") from None


def page(
    session: Session,
    query: sa.Select[T],
    *,
    created_at: InstrumentedAttribute[datetime],
    row_id: InstrumentedAttribute[Any],
    cursor: str | None,
    limit: int,
    newest_first: bool = False,
) -> tuple[Sequence[T], str | None]:
    """One page of ``query`` and the cursor of the next page (None on the last page)."""
    limit = max(1, min(limit, MAX_LIMIT))
    if cursor:
        after_time, after_id = decode_cursor(cursor)
        key = sa.tuple_(created_at, row_id)
        query = query.where(key < (after_time, after_id) if newest_first else key > (after_time, after_id))
    order = (created_at.desc(), row_id.desc()) if newest_first else (created_at.asc(), row_id.asc())
    rows = session.scalars(query.order_by(*order).limit(limit + 1)).all()
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(getattr(last, created_at.key), str(getattr(last, row_id.key)))
