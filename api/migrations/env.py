"""Alembic environment: runs against the URL the caller put in the config."""

from __future__ import annotations

from alembic import context

import api.models  # noqa: F401  (registers every table on Base.metadata)
from api.db import Base, make_engine

config = context.config
url = config.get_main_option("sqlalchemy.url") or ""
engine = make_engine(url)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=url.startswith("sqlite"),
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
