"""Cluster rewriting of migration statements: ``_local`` + ``Distributed`` pairs.

On a sharded cluster a Replicated table holds only its shard's rows, so every table the
migrations create becomes two: ``<name>_local`` (Replicated, one replica set per shard)
and ``<name>``, a ``Distributed`` table over the ``_local`` tables of every shard. The
application, the sinks and dbt keep using ``<name>``. Inserts are routed by the sharding
key: the team (``cityHash64(team_id)``) wherever team_id is in the sort key, so a team's
rows, and every copy of an event (same event_id, same team), sit on one shard, where
``FINAL`` and ReplacingMergeTree merges can collapse them. A table whose sort key lacks
team_id needs an entry in ``SHARDING_KEYS`` built from its sort-key columns (the replacing
key), for the same reason.

ALTERs are written once, against ``<name>``: column changes go to both tables (the
Distributed table must describe the same columns), everything else (indexes, TTL,
mutations, projections, settings) only to ``_local``, which holds the data.
"""

from __future__ import annotations

import re

LOCAL_SUFFIX = "_local"
LEDGER = "schema_migrations"

# Tables whose sort key has no team_id: shard by the leading sort-key columns, so that
# every row a ReplacingMergeTree merge may collapse with it (same sort key) is co-located.
SHARDING_KEYS = {
    # IP/provider/team windows: a scope's time series on one shard (few rows per window).
    "raw_reputation_signals": "cityHash64(scope, scope_key)",
    # A DMARC/TLS report and its records share the policy domain: they join locally.
    "raw_dmarc_reports": "cityHash64(domain)",
    "raw_dmarc_records": "cityHash64(domain)",
    "raw_dmarc_failure_reports": "cityHash64(reported_domain)",
    "raw_tls_reports": "cityHash64(policy_domain)",
}

# ALTER commands a Distributed table takes (and needs, to keep describing the columns).
COLUMN_COMMANDS = ("ADD COLUMN", "DROP COLUMN", "MODIFY COLUMN", "RENAME COLUMN", "COMMENT COLUMN")

_CREATE = re.compile(
    r"^CREATE TABLE IF NOT EXISTS (?P<db>\w+)\.(?P<name>\w+) (?P<on>ON CLUSTER '[^']+')\s*"
    r"(?P<rest>\(.*)$",
    re.S | re.I,
)
_ALTER = re.compile(
    r"^ALTER TABLE (?P<db>\w+)\.(?P<name>\w+) (?P<on>ON CLUSTER '[^']+')\s+(?P<commands>.*)$",
    re.S | re.I,
)


def ledger_ddl(database: str, cluster: str) -> str:
    """The migrations ledger. On a cluster: one replica set spanning every node of every
    shard (its Keeper path has no {shard}), so the ledger is one table, not one per node."""
    if not cluster:
        return (
            f"CREATE TABLE IF NOT EXISTS {database}.{LEDGER}  "
            "(name String, applied_at DateTime DEFAULT now()) "
            "ENGINE = ReplacingMergeTree ORDER BY name"
        )
    return (
        f"CREATE TABLE IF NOT EXISTS {database}.{LEDGER} ON CLUSTER '{cluster}' "
        "(name String, applied_at DateTime DEFAULT now()) "
        f"ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/{database}/{LEDGER}',"
        " '{replica}') ORDER BY name"
    )


def split_top_level(text: str) -> list[str]:
    """Split on commas outside parentheses and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote and text[i - 1] != "\\":
                quote = ""
        elif ch in "'`\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def order_by(create_sql: str) -> list[str]:
    """The sort-key expressions of a CREATE TABLE (``ORDER BY (a, f(b))`` -> [a, f(b)])."""
    match = re.search(r"\bORDER BY\s+", create_sql, re.I)
    if not match:
        return []
    rest = create_sql[match.end() :]
    if not rest.startswith("("):
        return [rest.split()[0]]
    depth = 0
    for i, ch in enumerate(rest):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0:
            return split_top_level(rest[1:i])
    raise ValueError(f"unbalanced ORDER BY in: {create_sql[:80]}")


def sharding_key(name: str, create_sql: str) -> str:
    """cityHash64(team_id) when the sort key starts from the team, else SHARDING_KEYS."""
    if name in SHARDING_KEYS:
        return SHARDING_KEYS[name]
    if "team_id" in order_by(create_sql):
        return "cityHash64(team_id)"
    raise ValueError(
        f"{name}: no team_id in its ORDER BY; give it a sharding key in "
        "kibamail/clickhouse_schema/cluster.py SHARDING_KEYS (see migrations/README.md)"
    )


def _is_column_command(command: str) -> bool:
    return re.sub(r"\s+", " ", command).upper().startswith(COLUMN_COMMANDS)


def cluster_statements(stmt: str, database: str, cluster: str) -> list[str]:
    """One filled-in migration statement as the statements a sharded cluster runs."""
    create = _CREATE.match(stmt)
    if create and "MergeTree" in create["rest"]:
        name, on = create["name"], create["on"]
        local = f"{create['db']}.{name}{LOCAL_SUFFIX}"
        return [
            f"CREATE TABLE IF NOT EXISTS {local} {on}\n{create['rest']}",
            f"CREATE TABLE IF NOT EXISTS {create['db']}.{name} {on} AS {local}\n"
            f"ENGINE = Distributed('{cluster}', '{database}', '{name}{LOCAL_SUFFIX}', "
            f"{sharding_key(name, create['rest'])})",
        ]
    alter = _ALTER.match(stmt)
    if alter:
        name, on, commands = alter["name"], alter["on"], alter["commands"]
        if name == LEDGER or name.endswith(LOCAL_SUFFIX):
            raise ValueError(f"ALTER the plain table name, not {name}: {stmt[:80]}")
        kinds = {_is_column_command(c) for c in split_top_level(commands)}
        if kinds == {True, False}:
            raise ValueError(
                "one ALTER mixes column and data commands; write them as two statements: "
                + stmt[:80]
            )
        local = f"ALTER TABLE {alter['db']}.{name}{LOCAL_SUFFIX} {on}\n    {commands}"
        if kinds == {False}:
            return [local]
        distributed = f"ALTER TABLE {alter['db']}.{name} {on}\n    {commands}"
        # A dropped column leaves the Distributed table first, so no query through it asks
        # the shards for a column they no longer have; other column changes reach the
        # shards first, so inserts through the Distributed table always find the column.
        if all(re.match(r"\s*DROP COLUMN", c, re.I) for c in split_top_level(commands)):
            return [distributed, local]
        return [local, distributed]
    return [stmt]
