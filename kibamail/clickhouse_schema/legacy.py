"""Adopt a cluster migrated before the ``_local`` + ``Distributed`` layout.

Such a cluster (1 shard x N replicas, the ``small`` overlay) has its tables under their
plain names as Replicated tables and the ledger as a plain table on the node the migrate
Job was pinned to (shard 0, replica 0). Its migrations are all recorded, so nothing would
ever create the new layout, and the next ALTER (written against ``<name>``, sent to
``<name>_local``) would fail. The first run of the new code therefore renames each such
table to ``<name>_local`` ON CLUSTER (its Keeper path was fixed when it was created, so
replication is untouched), creates the Distributed ``<name>`` over it, and copies the
ledger into the replicated one. Run that first upgrade through the Job alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kibamail.clickhouse_schema.cluster import LEDGER, LOCAL_SUFFIX, ledger_ddl

LEGACY_LEDGER = LEDGER + "_legacy"


def engines(client: Any, database: str) -> dict[str, str]:
    rows = client.query(
        f"SELECT name, engine FROM system.tables WHERE database = '{database}'"
    ).result_rows
    return {str(name): str(engine) for name, engine in rows}


def adopt(
    client: Any,
    database: str,
    cluster: str,
    creates: dict[str, list[str]],
    run: Callable[[Any, str], None],
) -> list[str]:
    """Move old-layout tables to ``_local`` + Distributed; returns the tables adopted.

    ``creates``: each migration table's cluster statements (``_local``, then Distributed)."""
    present = engines(client, database)
    old = [
        name
        for name in creates
        if name in present and present[name] != "Distributed" and name + LOCAL_SUFFIX not in present
    ]
    # A run cut short between a RENAME and its CREATE: the Distributed table is missing.
    unfinished = [n for n in creates if n + LOCAL_SUFFIX in present and n not in present]
    if not old and not unfinished:
        return []
    on_cluster = f"ON CLUSTER '{cluster}'"
    if LEDGER in present and not present[LEDGER].startswith("Replicated"):
        run(client, f"RENAME TABLE {database}.{LEDGER} TO {database}.{LEGACY_LEDGER} {on_cluster}")
        present[LEGACY_LEDGER] = present.pop(LEDGER)
    if LEGACY_LEDGER in present:
        run(client, ledger_ddl(database, cluster))
        # Names, deduplicated by the ReplacingMergeTree: copying twice changes nothing.
        run(
            client,
            f"INSERT INTO {database}.{LEDGER} (name, applied_at) "
            f"SELECT name, applied_at FROM {database}.{LEGACY_LEDGER} FINAL",
        )
    for name in old:
        run(
            client,
            f"RENAME TABLE {database}.{name} TO {database}.{name}{LOCAL_SUFFIX} {on_cluster}",
        )
    for name in old + unfinished:
        run(client, creates[name][1])
    return old + unfinished
