"""One value for a failed attempt: attempts the worker wrote as ``error`` become ``failed``

Revision ID: 0004c
Revises: 0003c
Create Date: 2026-12-04 13:00:00.000000

A data migration, no schema change. Delivery attempts that failed and were retried were stored as ``error``,
while a failed synchronous request was stored as ``failed``; DESIGN's word for a failure is ``failed``, and
``domain.delivery_states.AttemptOutcome`` now writes only that. Downgrade leaves the rows as they are: the older
code wrote ``failed`` itself and only displays the value, so nothing it does depends on which of the two it reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004c"
down_revision: str | None = "0003c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

attempts = sa.table("attempts", sa.column("outcome", sa.String))


def upgrade() -> None:
    op.execute(attempts.update().where(attempts.c.outcome == "error").values(outcome="failed"))


def downgrade() -> None:
    pass
