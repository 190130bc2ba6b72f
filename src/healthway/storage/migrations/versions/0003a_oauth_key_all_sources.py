"""oauth keys: "every source of the environment" stored explicitly (all_sources), not read from an empty list

Before, a key with no oauth_key_sources rows covered every source of its environment, so a key limited to
listed sources became environment-wide when its last listed source was deleted. Keys that have no rows today
were created for the whole environment: they get all_sources = true; every other key is limited.

Revision ID: 0003a
Revises: 0002c
Create Date: 2026-12-01 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0003a"
down_revision: str | None = "0002c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # recreate="never": ALTER TABLE ADD COLUMN in place. A batch table copy on SQLite drops the old oauth_keys
    # table, and with foreign keys on that cascades and empties oauth_key_sources (every limited key would then
    # be marked environment-wide below).
    with op.batch_alter_table("oauth_keys", schema=None, recreate="never") as batch_op:
        batch_op.add_column(sa.Column("all_sources", sa.Boolean(), nullable=False, server_default=sa.false()))
    keys = sa.table("oauth_keys", sa.column("id", sa.String), sa.column("all_sources", sa.Boolean))
    listed = sa.table("oauth_key_sources", sa.column("key_id", sa.String))
    has_sources = sa.exists().where(listed.c.key_id == keys.c.id)
    op.execute(keys.update().where(~has_sources).values(all_sources=True))


def downgrade() -> None:
    # A disabled key (limited, no sources left) would read as environment-wide again: revoke nothing silently,
    # delete such keys instead.
    keys = sa.table("oauth_keys", sa.column("id", sa.String), sa.column("all_sources", sa.Boolean))
    listed = sa.table("oauth_key_sources", sa.column("key_id", sa.String))
    has_sources = sa.exists().where(listed.c.key_id == keys.c.id)
    op.execute(keys.delete().where(~keys.c.all_sources, ~has_sources))
    # In place (SQLite 3.35+ DROP COLUMN), for the same reason as in upgrade.
    with op.batch_alter_table("oauth_keys", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("all_sources")
