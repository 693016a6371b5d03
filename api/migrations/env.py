"""Alembic environment: runs against the URL the caller put in the config, holding the
database's migration lock so processes starting together upgrade once (api.db)."""

from __future__ import annotations

from alembic import context

import api.models  # noqa: F401  (registers every table on Base.metadata)
from api.db import MIGRATION_LOCK_TIMEOUT_SECONDS, Base, make_engine, migration_connection

config = context.config
url = config.get_main_option("sqlalchemy.url") or ""
engine = make_engine(url)
timeout = int(config.attributes.get("lock_timeout", MIGRATION_LOCK_TIMEOUT_SECONDS))
with migration_connection(engine, timeout) as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=url.startswith("sqlite"),
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
