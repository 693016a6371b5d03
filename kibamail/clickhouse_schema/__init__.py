"""ClickHouse schema, managed in one place: ordered SQL migrations applied once each.

Locally the engines are plain MergeTree-family tables in chDB; with
``KIBAMAIL_CLICKHOUSE__CLUSTER`` set, DDL runs ``ON CLUSTER`` with Replicated engines.
"""

from __future__ import annotations

from pathlib import Path
from string import Template
from typing import Protocol

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class CommandClient(Protocol):
    def command(self, cmd: str) -> object: ...

    def query(self, query: str) -> object: ...


def render(sql: str, database: str, cluster: str = "") -> str:
    """Fill $db, $on_cluster and $replacing for a local or clustered deployment."""
    if cluster:
        replacing = (
            "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/"
            + database
            + "/{table}', '{replica}', "
        )
        on_cluster = f"ON CLUSTER '{cluster}'"
    else:
        replacing = "ReplacingMergeTree("
        on_cluster = ""
    # `$replacing(ingested_at)` -> `ReplacingMergeTree(ingested_at)`
    sql = sql.replace("$replacing(", "${replacing}")
    return Template(sql).substitute(db=database, on_cluster=on_cluster, replacing=replacing)


def statements(sql: str) -> list[str]:
    """Split a migration file into statements (no semicolons inside our DDL strings)."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [stmt.strip() for stmt in "\n".join(lines).split(";") if stmt.strip()]


def migrate(client: CommandClient, database: str, cluster: str = "") -> list[str]:
    """Apply pending migrations in order; returns the names applied. Safe to run repeatedly."""
    on_cluster = f"ON CLUSTER '{cluster}'" if cluster else ""
    client.command(f"CREATE DATABASE IF NOT EXISTS {database} {on_cluster}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations {on_cluster} "
        "(name String, applied_at DateTime DEFAULT now()) ENGINE = ReplacingMergeTree ORDER BY name"
    )
    done = {
        row[0]
        for row in client.query(  # type: ignore[attr-defined]
            f"SELECT name FROM {database}.schema_migrations FINAL"
        ).result_rows
    }
    applied = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if path.stem in done:
            continue
        for stmt in statements(render(path.read_text(), database, cluster)):
            client.command(stmt)
        client.command(f"INSERT INTO {database}.schema_migrations (name) VALUES ('{path.stem}')")
        applied.append(path.stem)
    return applied
