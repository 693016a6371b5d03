"""account email verification, API key role ceiling and creator

``users.email_verified_at`` gates sending (a team sends once its creator's address is
verified). Existing users are marked verified now: they signed up before verification
existed and their teams already send. ``api_keys.role`` is the creating member's role, the
most a key may ever do; existing keys keep ``administrator`` (what every key could do
before), ``api_keys.created_by`` is unknown for them (NULL).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email_verified_at", sa.DateTime(), nullable=True))
    users = sa.table(
        "users", sa.column("created_at", sa.DateTime), sa.column("email_verified_at", sa.DateTime)
    )
    op.execute(users.update().values(email_verified_at=users.c.created_at))
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("role", sa.String(length=20), nullable=False, server_default="administrator")
        )
        batch_op.add_column(sa.Column("created_by", sa.String(length=32), nullable=True))
        batch_op.create_foreign_key(
            "fk_api_keys_created_by", "users", ["created_by"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_constraint("fk_api_keys_created_by", type_="foreignkey")
        batch_op.drop_column("created_by")
        batch_op.drop_column("role")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("email_verified_at")
