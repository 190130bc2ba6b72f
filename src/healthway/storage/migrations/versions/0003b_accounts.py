"""accounts: pending invitations, organization-bound personal access tokens, must-change passwords, login
throttling per (account, address) with aggregated refusals

Revision ID: 0003b
Revises: 0003a
Create Date: 2026-12-01 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0003b"
down_revision: str | None = "0003a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "invitations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organization_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("org_role", sa.String(length=20), nullable=False),
        sa.Column("invited_by", sa.String(length=320), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_invitations_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_invitations_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitations")),
        sa.UniqueConstraint("organization_id", "user_id", name=op.f("uq_invitations_organization_id")),
    )
    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_invitations_user_id"), ["user_id"], unique=False)
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("password_must_change", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("personal_access_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("organization_id", sa.String(length=36), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_personal_access_tokens_organization_id"), ["organization_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_personal_access_tokens_organization_id_organizations"),
            "organizations",
            ["organization_id"],
            ["id"],
            ondelete="CASCADE",
        )
    with op.batch_alter_table("login_failures", schema=None) as batch_op:
        batch_op.add_column(sa.Column("refused", sa.Integer(), nullable=False, server_default="0"))
        batch_op.create_index(
            "ix_login_failures_email_address_occurred", ["email", "address", "occurred_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("login_failures", schema=None) as batch_op:
        batch_op.drop_index("ix_login_failures_email_address_occurred")
        batch_op.drop_column("refused")
    with op.batch_alter_table("personal_access_tokens", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_personal_access_tokens_organization_id_organizations"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_personal_access_tokens_organization_id"))
        batch_op.drop_column("organization_id")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("password_must_change")
    op.drop_table("invitations")
