"""Run the migrations in an in-process chDB and print what they built, as JSON.

Run as a subprocess (``python -m kibamail.tests.chdb_cluster_probe CONFIG``) so the chDB
configuration (a 2-shard ``kibamail`` cluster in ``remote_servers``) stays out of the test
process. chDB has no Keeper and no distributed DDL, so for cluster mode every rendered
statement is first checked by ClickHouse's own parser (``formatQuery``), then executed on
this one node with ``ON CLUSTER`` dropped and the Replicated engines made plain; the
Distributed tables are real. Local mode runs as production's local chDB does, next to the
renderer as it was before the cluster layout (``legacy``) for comparison.
"""

from __future__ import annotations

import json
import re
import sys
from string import Template
from typing import Any

import chdb

from kibamail.clickhouse_schema import MIGRATIONS_DIR, migrate, statements

CLUSTER = "kibamail"


class ChdbClient:
    """The CommandClient migrate() needs, over a chDB cursor; single-node translation."""

    def __init__(self, cursor: Any, single_node: bool) -> None:
        self.cursor = cursor
        self.single_node = single_node
        self.parsed: list[str] = []

    def _sql(self, sql: str) -> Any:
        self.cursor.execute(sql)
        return self.cursor.fetchall()

    def command(self, cmd: str) -> object:
        if not self.single_node:
            return self._sql(cmd)
        self._sql("SELECT formatQuery(" + quote(cmd) + ")")  # raises on a syntax error
        self.parsed.append(cmd)
        if cmd.startswith("SYSTEM SYNC REPLICA"):
            return None
        cmd = cmd.replace(f" ON CLUSTER '{CLUSTER}'", "")
        cmd = re.sub(r"Replicated(\w*MergeTree)\('[^']*', '[^']*'(, )?", r"\1(", cmd)
        cmd = cmd.replace("MergeTree()", "MergeTree")
        return self._sql(cmd)

    def query(self, query: str) -> Any:
        class Result:
            result_rows = self._sql(query)

        return Result()


def quote(sql: str) -> str:
    return "'" + sql.replace("\\", "\\\\").replace("'", "\\'") + "'"


def legacy_migrate(client: ChdbClient, database: str) -> None:
    """The local renderer and runner as they were before the cluster layout."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {database} ")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations  "
        "(name String, applied_at DateTime DEFAULT now()) ENGINE = ReplacingMergeTree ORDER BY name"
    )
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        sql = path.read_text().replace("$replacing(", "${replacing}")
        sql = Template(sql).substitute(db=database, on_cluster="", replacing="ReplacingMergeTree(")
        for stmt in statements(sql):
            client.command(stmt)
        client.command(f"INSERT INTO {database}.schema_migrations (name) VALUES ('{path.stem}')")


def legacy_cluster_migrate(client: ChdbClient, database: str) -> None:
    """A cluster as the renderer left it before the layout: Replicated tables under their
    plain names, a plain ledger on the migrating node."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {database} ON CLUSTER '{CLUSTER}'")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations ON CLUSTER '{CLUSTER}' "
        "(name String, applied_at DateTime DEFAULT now()) ENGINE = ReplacingMergeTree ORDER BY name"
    )
    replacing = (
        f"ReplicatedReplacingMergeTree('/clickhouse/tables/{{shard}}/{database}/{{table}}', "
        "'{replica}', "
    )
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        sql = path.read_text().replace("$replacing(", "${replacing}")
        sql = Template(sql).substitute(
            db=database, on_cluster=f"ON CLUSTER '{CLUSTER}'", replacing=replacing
        )
        for stmt in statements(sql):
            client.command(stmt)
        client.command(f"INSERT INTO {database}.schema_migrations (name) VALUES ('{path.stem}')")
    client.command(f"INSERT INTO {database}.raw_team_pauses (event_id, team_id) VALUES ('e1', 't')")


def describe(client: ChdbClient, database: str) -> dict[str, Any]:
    tables = client._sql(
        "SELECT name, engine, engine_full FROM system.tables "
        f"WHERE database = '{database}' ORDER BY name"
    )
    columns = client._sql(
        "SELECT table, name, type, default_kind, default_expression, compression_codec "
        f"FROM system.columns WHERE database = '{database}' ORDER BY table, position"
    )
    ledger = client._sql(f"SELECT name FROM {database}.schema_migrations FINAL ORDER BY name")
    out: dict[str, Any] = {"tables": {}, "ledger": [r[0] for r in ledger]}
    for name, engine, engine_full in tables:
        out["tables"][name] = {
            "engine": engine,
            "engine_full": engine_full.replace(database, "<db>"),
            "columns": [list(c[1:]) for c in columns if c[0] == name],
        }
    return out


def main(config: str) -> None:
    # chdb.connect is untyped in some installs and typed in others (mypy disagrees
    # between caches): called through an Any-typed name, it checks the same everywhere.
    connect: Any = chdb.connect
    connection = connect(f":memory:?config-file={config}")
    cursor = connection.cursor()
    cluster = ChdbClient(cursor, single_node=True)
    first = migrate(cluster, "kibamail", CLUSTER)
    again = migrate(cluster, "kibamail", CLUSTER)
    parsed = list(cluster.parsed)
    legacy_cluster_migrate(cluster, "upgraded")
    upgraded = migrate(cluster, "upgraded", CLUSTER)
    kept = cluster._sql("SELECT event_id FROM upgraded.raw_team_pauses_local")
    local = ChdbClient(cursor, single_node=False)
    applied_local = migrate(local, "local_now", "")
    legacy_migrate(local, "local_before")
    print(
        json.dumps(
            {
                "cluster": describe(cluster, "kibamail"),
                "cluster_applied": [first, again],
                "cluster_statements": parsed,
                "upgrade_statements": cluster.parsed[len(parsed) :],
                "upgraded": describe(cluster, "upgraded"),
                "upgraded_applied": upgraded,
                "upgraded_rows": [r[0] for r in kept],
                "local_now": describe(local, "local_now"),
                "local_applied": applied_local,
                "local_before": describe(local, "local_before"),
            }
        )
    )
    connection.close()


if __name__ == "__main__":
    main(sys.argv[1])
