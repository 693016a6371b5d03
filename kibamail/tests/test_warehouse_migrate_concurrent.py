"""Several `migrate_warehouse` runs at once on one fresh database (the chDB gateway as a real
subprocess): all succeed, every table exists once with the columns one run gives, and the
ledger names each migration (the statements are idempotent and additive, so interleaved
runs converge without a lock: kibamail/clickhouse_schema/migrations/README.md)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

from kibamail.clickhouse_schema import MIGRATIONS_DIR
from kibamail.clients import clickhouse_client, migrate_warehouse
from kibamail.settings import ClickHouseSettings, Settings

pytestmark = pytest.mark.integration

RUNNERS = 4


def settings_for(test_settings: Settings, database: str) -> Settings:
    clickhouse = test_settings.clickhouse.model_copy(update={"database": database})
    return test_settings.model_copy(update={"clickhouse": clickhouse})


def schema(client: Any, database: str) -> tuple[list[Any], list[Any]]:
    tables = client.query(
        "SELECT name, engine_full FROM system.tables WHERE database = {d:String} ORDER BY name",
        parameters={"d": database},
    ).result_rows
    columns = client.query(
        "SELECT table, name, type, default_expression FROM system.columns "
        "WHERE database = {d:String} ORDER BY table, position",
        parameters={"d": database},
    ).result_rows
    return (
        [(n, e.replace(database, "<db>")) for n, e in tables],
        [tuple(c) for c in columns],
    )


def test_concurrent_migrators_build_the_schema_once(
    test_settings: Settings, warehouse_service: ClickHouseSettings
) -> None:
    database = "race_" + uuid.uuid4().hex[:10]
    settings = settings_for(test_settings, database)
    barrier = threading.Barrier(RUNNERS)
    applied: list[list[str]] = []
    errors: list[BaseException] = []

    def runner() -> None:
        try:
            barrier.wait(timeout=60)
            applied.append(migrate_warehouse(settings))
        except BaseException as exc:  # reported below with the others
            errors.append(exc)

    threads = [threading.Thread(target=runner) for _ in range(RUNNERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    assert len(applied) == RUNNERS

    names = [p.stem for p in sorted(MIGRATIONS_DIR.glob("*.sql"))]
    client = clickhouse_client(settings, database="default")
    ledger = client.query(
        f"SELECT name, count() FROM {database}.schema_migrations FINAL GROUP BY name ORDER BY name"
    ).result_rows
    assert ledger == [(name, 1) for name in names]
    # Every migration was applied by at least one runner; a later run has nothing to do.
    assert set().union(*map(set, applied)) == set(names)
    assert migrate_warehouse(settings) == []

    # The same schema one undisturbed run builds.
    reference = "once_" + uuid.uuid4().hex[:10]
    migrate_warehouse(settings_for(test_settings, reference))
    assert schema(client, database) == schema(client, reference)
    columns = [c[1] for c in schema(client, database)[1] if c[0] == "raw_message_events"]
    assert len(columns) == len(set(columns))
