"""domain ownership token

Each domain row gets its team's token for the ``_kibamail-verify.<domain>`` TXT record,
which proves control of a name that several teams have added. Existing rows get a fresh
random token each.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 19:30:00.000000
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("domains", schema=None) as batch_op:
        batch_op.add_column(sa.Column("verify_token", sa.String(length=64), nullable=True))
    domains = sa.table("domains", sa.column("id", sa.String), sa.column("verify_token", sa.String))
    bind = op.get_bind()
    for (domain_id,) in bind.execute(sa.select(domains.c.id)).all():
        bind.execute(
            domains.update()
            .where(domains.c.id == domain_id)
            .values(verify_token=secrets.token_hex(16))
        )


def downgrade() -> None:
    with op.batch_alter_table("domains", schema=None) as batch_op:
        batch_op.drop_column("verify_token")
