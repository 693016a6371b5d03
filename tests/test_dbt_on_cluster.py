"""dbt on a sharded cluster: with KIBAMAIL_CLICKHOUSE__CLUSTER set the profile picks the
`cluster` output (GLOBAL subqueries over the Distributed raw tables) and every model's engine
is one replica set over all shards, so a model built through one node is whole on every node;
without it the profile and the engines are exactly the local ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import jinja2
import pytest

from kibamail.settings import REPO_ROOT

pytestmark = pytest.mark.unit

DBT = REPO_ROOT / "dbt"
RENDER_PROFILE = """
import json, os
from dbt_common.context import set_invocation_context
set_invocation_context(os.environ)
from dbt.config.profile import Profile, read_profile
from dbt.config.renderer import ProfileRenderer
raw = read_profile(os.environ["PROFILES_DIR"])
name, data = Profile.render_profile(raw["kibamail"], "kibamail", None, ProfileRenderer({}))
print(json.dumps([name, data]))
"""
PARSE = """
import json, sys, chdb
out = []
for sql in json.loads(sys.stdin.read()):
    quoted = "'" + sql.replace("\\\\", "\\\\\\\\").replace("'", "\\\\'") + "'"
    out.append(chdb.query("SELECT formatQuery(" + quoted + ")", "TSVRaw").data())
print(json.dumps(out))
"""


def profile(cluster: str) -> tuple[str, dict[str, Any]]:
    env = {**os.environ, "KIBAMAIL_CLICKHOUSE__CLUSTER": cluster, "PROFILES_DIR": str(DBT)}
    result = subprocess.run(
        [sys.executable, "-c", RENDER_PROFILE], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    name, data = json.loads(result.stdout.strip().splitlines()[-1])
    return name, data


def table_engine(engine: str, cluster: str) -> str:
    macro = (DBT / "macros" / "table_engine.sql").read_text()
    template = jinja2.Environment().from_string(macro + "{{ table_engine(engine) }}")
    return template.render(engine=engine, target={"cluster": cluster}).strip()


def test_local_profile_is_unchanged_and_the_cluster_profile_adds_global_subqueries() -> None:
    name, local = profile("")
    assert name == "default"
    assert local["custom_settings"] == {"max_insert_threads": 16}
    assert local["cluster"] == ""
    name, cluster = profile("kibamail")
    assert name == "cluster"
    assert cluster["cluster"] == "kibamail"
    assert cluster["custom_settings"]["distributed_product_mode"] == "global"
    assert {k: v for k, v in cluster.items() if k not in ("custom_settings", "cluster")} == {
        k: v for k, v in local.items() if k not in ("custom_settings", "cluster")
    }


@pytest.mark.parametrize(
    ("engine", "replicated"),
    [
        ("MergeTree()", "ReplicatedMergeTree('/clickhouse/tables/{uuid}/all', '{replica}')"),
        (
            "ReplacingMergeTree(ingested_at)",
            "ReplicatedReplacingMergeTree('/clickhouse/tables/{uuid}/all', '{replica}', "
            "ingested_at)",
        ),
    ],
)
def test_model_engines_replicate_over_every_shard(engine: str, replicated: str) -> None:
    assert table_engine(engine, "") == engine
    assert table_engine(engine, "kibamail") == replicated
    assert "{shard}" not in replicated


def test_cluster_model_ddl_parses() -> None:
    ddl = [
        f"CREATE TABLE kibamail.fct ON CLUSTER 'kibamail' (a String, ingested_at DateTime) "
        f"ENGINE = {table_engine(e, 'kibamail')} ORDER BY a"
        for e in ("MergeTree()", "ReplacingMergeTree(ingested_at)")
    ]
    result = subprocess.run(
        [sys.executable, "-c", PARSE],
        input=json.dumps(ddl),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    formatted = json.loads(result.stdout.strip().splitlines()[-1])
    assert all("/clickhouse/tables/{uuid}/all" in f for f in formatted)
