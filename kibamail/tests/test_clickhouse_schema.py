"""kibamail.clickhouse_schema on a sharded cluster: every table a Replicated ``_local`` plus a
Distributed table with the same columns, sharded so duplicates share a shard, ALTERs
reaching both, every statement accepted by ClickHouse's parser, a replicated ledger, and
the local (chDB) result exactly what it was before the cluster layout."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from string import Template
from typing import Any

import pytest

from kibamail.clickhouse_schema import MIGRATIONS_DIR, render, statements
from kibamail.clickhouse_schema.cluster import (
    SHARDING_KEYS,
    cluster_statements,
    ledger_ddl,
    order_by,
    split_top_level,
)
from kibamail.settings import REPO_ROOT

pytestmark = pytest.mark.unit

CLUSTER = "kibamail"
FILES = sorted(MIGRATIONS_DIR.glob("*.sql"))
CONFIG = """<clickhouse>
  <remote_servers><kibamail>
    <shard><replica><host>127.0.0.1</host><port>1</port></replica></shard>
    <shard><replica><host>127.0.0.2</host><port>1</port></replica></shard>
  </kibamail></remote_servers>
</clickhouse>
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The migrations run in chDB (cluster mode on a 2-shard cluster config, and local)."""
    config = tmp_path_factory.mktemp("chdb") / "cluster.xml"
    config.write_text(CONFIG)
    result = subprocess.run(
        [sys.executable, "-m", "kibamail.tests.chdb_cluster_probe", str(config)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def created_tables() -> list[str]:
    names = []
    for path in FILES:
        for stmt in statements(render(path.read_text(), "kibamail")):
            match = re.match(r"CREATE TABLE IF NOT EXISTS kibamail\.(\w+)", stmt)
            if match:
                names.append(match.group(1))
    return names


def test_local_rendering_is_the_template_filled_in_as_before() -> None:
    for path in FILES:
        sql = path.read_text().replace("$replacing(", "${replacing}")
        before = Template(sql).substitute(
            db="kibamail", on_cluster="", replacing="ReplacingMergeTree("
        )
        assert render(path.read_text(), "kibamail") == before, path.name


def test_local_migrations_build_exactly_what_they_built_before(probe: dict[str, Any]) -> None:
    assert probe["local_now"] == probe["local_before"]
    tables = probe["local_now"]["tables"]
    assert not [t for t in tables if t.endswith("_local")]
    assert {t["engine"] for t in tables.values()} == {"ReplacingMergeTree"}
    assert probe["local_applied"] == [p.stem for p in FILES]


def test_every_table_is_a_replicated_local_and_a_distributed_pair(
    probe: dict[str, Any],
) -> None:
    tables = probe["cluster"]["tables"]
    names = created_tables()
    assert sorted(tables) == sorted([*names, *(f"{n}_local" for n in names), "schema_migrations"])
    for name in names:
        local, dist = tables[f"{name}_local"], tables[name]
        assert dist["engine"] == "Distributed", name
        assert f"'{name}_local'" in dist["engine_full"], name
        # Same columns, types, defaults and codecs after every migration (0006's ALTERs too).
        assert dist["columns"] == local["columns"], name
    columns = [c[0] for c in tables["raw_message_events"]["columns"]]
    assert {"provider_group", "bounce_reason", "bounce_action"} <= set(columns)
    assert probe["cluster"]["ledger"] == [p.stem for p in FILES]
    assert probe["cluster_applied"] == [[p.stem for p in FILES], []]


def test_a_cluster_migrated_before_the_layout_is_adopted_in_place(probe: dict[str, Any]) -> None:
    """Old layout (Replicated tables under the plain names, a per-node ledger): the first new
    run renames each table to _local (its Keeper path and rows kept), adds the Distributed
    table and the replicated ledger, and re-applies nothing."""
    upgraded, fresh = probe["upgraded"], probe["cluster"]
    assert probe["upgraded_applied"] == []
    assert upgraded["ledger"] == fresh["ledger"]
    legacy = upgraded["tables"].pop("schema_migrations_legacy")
    assert legacy["engine"] == "ReplacingMergeTree"
    assert sorted(upgraded["tables"]) == sorted(fresh["tables"])
    for name, table in fresh["tables"].items():
        assert upgraded["tables"][name]["columns"] == table["columns"], name
        assert upgraded["tables"][name]["engine"] == table["engine"], name
    assert probe["upgraded_rows"] == ["e1"]  # the old table's rows, now in raw_team_pauses_local


def test_rendered_cluster_statements_are_replicated_on_cluster_and_parse(
    probe: dict[str, Any],
) -> None:
    parsed = probe["cluster_statements"]  # each passed ClickHouse's formatQuery in chDB
    rendered = [s for p in FILES for s in statements(render(p.read_text(), "kibamail", CLUSTER))]
    assert set(rendered) <= set(parsed)
    for stmt in parsed:
        if stmt.startswith(("SYSTEM SYNC REPLICA", "INSERT INTO kibamail.schema_migrations")):
            continue
        assert f"ON CLUSTER '{CLUSTER}'" in stmt.split("(")[0], stmt[:80]
        if "MergeTree" in stmt:
            assert "ReplicatedReplacingMergeTree(" in stmt, stmt[:80]
    creates = [s for s in rendered if s.startswith("CREATE TABLE")]
    assert all("_local" in s.split("(")[0] or "Distributed(" in s for s in creates)


def test_sharding_keys_keep_every_duplicate_on_one_shard() -> None:
    """A row and every row a ReplacingMergeTree merge may collapse it with share the sort key;
    a sharding key built from sort-key columns puts them on one shard (FINAL stays right)."""
    for path in FILES:
        for stmt in statements(render(path.read_text(), "kibamail", CLUSTER)):
            match = re.search(r"Distributed\('kibamail', 'kibamail', '(\w+)_local', (.*)\)$", stmt)
            if not match:
                continue
            name, key = match.groups()
            local = next(
                s
                for s in statements(render(path.read_text(), "kibamail", CLUSTER))
                if s.startswith(f"CREATE TABLE IF NOT EXISTS kibamail.{name}_local ")
            )
            sort_key = order_by(local)
            key_columns = re.findall(r"\w+", key.removeprefix("cityHash64"))
            assert set(key_columns) <= set(sort_key), (name, key, sort_key)
            if "team_id" in sort_key:
                assert key == "cityHash64(team_id)", name
            else:
                assert SHARDING_KEYS[name] == key, name


def test_alter_is_written_once_and_reaches_the_right_tables() -> None:
    """The shape of another engineer's 0007 (`ALTER TABLE $db.x $on_cluster ADD COLUMN ...`)
    reaches both tables; index work only the data; a DROP leaves the Distributed table first."""
    add = render(
        "ALTER TABLE $db.raw_message_events $on_cluster ADD COLUMN IF NOT EXISTS x String",
        "kibamail",
        CLUSTER,
    )
    assert statements(add) == [
        "ALTER TABLE kibamail.raw_message_events_local ON CLUSTER 'kibamail'\n"
        "    ADD COLUMN IF NOT EXISTS x String",
        "ALTER TABLE kibamail.raw_message_events ON CLUSTER 'kibamail'\n"
        "    ADD COLUMN IF NOT EXISTS x String",
    ]
    index = cluster_statements(
        "ALTER TABLE db.t ON CLUSTER 'c' ADD INDEX IF NOT EXISTS i x TYPE minmax GRANULARITY 1",
        "db",
        "c",
    )
    assert [s.split("\n")[0] for s in index] == ["ALTER TABLE db.t_local ON CLUSTER 'c'"]
    drop = cluster_statements("ALTER TABLE db.t ON CLUSTER 'c' DROP COLUMN IF EXISTS x", "db", "c")
    assert [s.split("\n")[0] for s in drop] == [
        "ALTER TABLE db.t ON CLUSTER 'c'",
        "ALTER TABLE db.t_local ON CLUSTER 'c'",
    ]
    with pytest.raises(ValueError, match="mixes column and data"):
        cluster_statements(
            "ALTER TABLE db.t ON CLUSTER 'c' ADD COLUMN y String, MATERIALIZE INDEX i", "db", "c"
        )
    with pytest.raises(ValueError, match="plain table name"):
        cluster_statements("ALTER TABLE db.t_local ON CLUSTER 'c' ADD COLUMN y String", "db", "c")


def test_a_new_table_without_team_in_its_sort_key_must_name_its_sharding_key() -> None:
    with pytest.raises(ValueError, match="SHARDING_KEYS"):
        render(
            "CREATE TABLE IF NOT EXISTS $db.raw_things $on_cluster (k String)\n"
            "ENGINE = $replacing(k) ORDER BY k",
            "kibamail",
            CLUSTER,
        )


def test_every_migration_is_idempotent_additive_and_on_cluster() -> None:
    """Concurrent migrators need no lock only because of this (migrations/README.md)."""
    allowed = re.compile(
        r"^(ADD (COLUMN|INDEX) IF NOT EXISTS|MATERIALIZE (INDEX|COLUMN|TTL|PROJECTION))\b", re.I
    )
    for path in FILES:
        for stmt in statements(path.read_text()):
            head = stmt.split("(")[0]
            assert "$on_cluster" in head, f"{path.name}: {head[:60]}"
            if stmt.startswith("CREATE"):
                assert stmt.startswith("CREATE TABLE IF NOT EXISTS $db."), path.name
                continue
            match = re.match(r"ALTER TABLE \$db\.\w+ \$on_cluster\s+(.*)$", stmt, re.S)
            assert match, f"{path.name}: neither CREATE IF NOT EXISTS nor ALTER: {head[:60]}"
            for command in split_top_level(match.group(1)):
                assert allowed.match(command), f"{path.name}: not additive/idempotent: {command}"


def test_the_ledger_is_one_replica_set_across_every_shard() -> None:
    ddl = ledger_ddl("kibamail", CLUSTER)
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/all/kibamail/" in ddl
    assert "{shard}" not in ddl and "ON CLUSTER 'kibamail'" in ddl


@pytest.mark.parametrize(
    ("database", "cluster"),
    [
        ("kibamail; DROP DATABASE kibamail", ""),
        ("kibamail", "kibamail' SETTINGS x=1 --"),
        ("other.db", CLUSTER),
        ("", CLUSTER),
    ],
)
def test_forged_database_or_cluster_names_are_refused(database: str, cluster: str) -> None:
    """Names go into DDL text: an injected one is refused before any statement is built."""

    from kibamail.clickhouse_schema import migrate

    class Recorder:
        def __init__(self) -> None:
            self.sent: list[str] = []

        def command(self, cmd: str) -> object:
            self.sent.append(cmd)
            return None

        def query(self, query: str) -> object:
            raise AssertionError("nothing may be read either")

    client = Recorder()
    with pytest.raises(ValueError, match="name"):
        migrate(client, database, cluster)
    with pytest.raises(ValueError, match="name"):
        render((MIGRATIONS_DIR / "0001_raw_events.sql").read_text(), database, cluster)
    assert client.sent == []


def test_migrations_readme_documents_the_templates() -> None:
    readme = (MIGRATIONS_DIR / "README.md").read_text()
    for word in ("$on_cluster", "$replacing", "_local", "Distributed", "SHARDING_KEYS"):
        assert word in readme


def test_an_adoption_cut_short_after_a_rename_finishes_on_the_next_run() -> None:
    from kibamail.clickhouse_schema import cluster_tables, legacy

    class Catalog:
        def __init__(self) -> None:
            self.sent: list[str] = []

        def query(self, query: str) -> Any:
            class Rows:
                result_rows = [
                    ("raw_team_pauses_local", "ReplicatedReplacingMergeTree"),
                    ("schema_migrations", "ReplicatedReplacingMergeTree"),
                ]

            return Rows()

    catalog = Catalog()
    tables = cluster_tables("kibamail", CLUSTER)
    done = legacy.adopt(
        catalog, "kibamail", CLUSTER, tables, lambda _c, stmt: catalog.sent.append(stmt)
    )
    assert done == ["raw_team_pauses"]
    assert catalog.sent == [tables["raw_team_pauses"][1]]
