"""ClickHouse schema, managed in one place: ordered SQL migrations applied once each.

Locally the engines are plain MergeTree-family tables in chDB; with
``KIBAMAIL_CLICKHOUSE__CLUSTER`` set, DDL runs ``ON CLUSTER`` and every table becomes a
Replicated ``<name>_local`` on each shard plus a ``Distributed`` ``<name>`` over them
(``cluster.py``; the rules a migration author follows are in ``migrations/README.md``).

Concurrent runs (several Jobs, a Job and a developer) need no lock: every statement is
idempotent and additive (``tests`` enforce it), so runs interleaved in any order converge
on the same schema, and the ledger is a ReplacingMergeTree keyed by name.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from string import Template
from typing import Protocol

from kibamail.clickhouse_schema import legacy
from kibamail.clickhouse_schema.cluster import LEDGER, cluster_statements, ledger_ddl

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# Errors a concurrent migrator can cause on a cluster, worth the same statement again:
# 517 CANNOT_ASSIGN_ALTER (another ALTER of the table is still being applied),
# 57/82 TABLE/DATABASE_ALREADY_EXISTS and 253 REPLICA_ALREADY_EXISTS (two CREATE ... IF NOT
# EXISTS racing), 999 KEEPER_EXCEPTION (a Keeper session lost mid-DDL).
RETRYABLE_CODES = frozenset({57, 82, 253, 517, 999})
RETRIES = 5


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_names(database: str, cluster: str) -> None:
    """Database and cluster names go into DDL text: plain identifiers only."""
    if not _NAME.match(database) or (cluster and not re.match(r"^[A-Za-z0-9_-]+$", cluster)):
        raise ValueError(f"invalid ClickHouse database or cluster name: {database!r} {cluster!r}")


class CommandClient(Protocol):
    def command(self, cmd: str) -> object: ...

    def query(self, query: str) -> object: ...


def render(sql: str, database: str, cluster: str = "") -> str:
    """Fill $db, $on_cluster and $replacing for a local or clustered deployment.

    Locally the text is the template filled in, nothing more. On a cluster each CREATE
    TABLE becomes a ``_local`` + ``Distributed`` pair and each ALTER reaches the tables it
    must (``cluster.cluster_statements``)."""
    check_names(database, cluster)
    filled = _fill(sql, database, cluster)
    if not cluster:
        return filled
    rewritten = [
        out for stmt in statements(filled) for out in cluster_statements(stmt, database, cluster)
    ]
    return ";\n\n".join(rewritten)


def _fill(sql: str, database: str, cluster: str) -> str:
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


def cluster_tables(database: str, cluster: str) -> dict[str, list[str]]:
    """Every migration table's cluster statements: [``_local`` CREATE, Distributed CREATE]."""
    tables = {}
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        for stmt in statements(_fill(path.read_text(), database, cluster)):
            pair = cluster_statements(stmt, database, cluster)
            if stmt.startswith("CREATE TABLE") and len(pair) == 2:
                tables[stmt.split(".", 1)[1].split()[0]] = pair
    return tables


def statements(sql: str) -> list[str]:
    """Split a migration file into statements (no semicolons inside our DDL strings)."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [stmt.strip() for stmt in "\n".join(lines).split(";") if stmt.strip()]


def error_code(exc: BaseException) -> int | None:
    """ClickHouse's error code in an exception's text (``Code: 517. DB::Exception...``)."""
    match = re.search(r"Code: (\d+)\.", str(exc))
    return int(match.group(1)) if match else None


def run(client: CommandClient, stmt: str) -> None:
    """One idempotent statement, again on the errors a concurrent migrator causes."""
    for attempt in range(RETRIES):
        try:
            client.command(stmt)
            return
        except Exception as exc:
            if error_code(exc) not in RETRYABLE_CODES or attempt == RETRIES - 1:
                raise
            time.sleep(0.2 * 2**attempt)


def applied(client: CommandClient, database: str, cluster: str = "") -> set[str]:
    """Names in the ledger. On a cluster this node first catches up with the ledger's
    other replicas, so a run through any node sees what a run through another recorded."""
    if cluster:
        client.command(f"SYSTEM SYNC REPLICA {database}.{LEDGER}")
    rows = client.query(  # type: ignore[attr-defined]
        f"SELECT name FROM {database}.{LEDGER} FINAL"
    ).result_rows
    return {row[0] for row in rows}


def migrate(client: CommandClient, database: str, cluster: str = "") -> list[str]:
    """Apply pending migrations in order; returns the names applied. Safe to run repeatedly
    and from several processes or hosts at once (see the module docstring)."""
    check_names(database, cluster)
    on_cluster = f"ON CLUSTER '{cluster}'" if cluster else ""
    run(client, f"CREATE DATABASE IF NOT EXISTS {database} {on_cluster}")
    if cluster:
        legacy.adopt(client, database, cluster, cluster_tables(database, cluster), run)
    run(client, ledger_ddl(database, cluster))
    done = applied(client, database, cluster)
    names = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if path.stem in done:
            continue
        for stmt in statements(render(path.read_text(), database, cluster)):
            run(client, stmt)
        client.command(f"INSERT INTO {database}.{LEDGER} (name) VALUES ('{path.stem}')")
        names.append(path.stem)
    return names
