"""The dbt project parses offline and carries the tests the issue asks for."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dagster_project.project import DBT_PROJECT_DIR, dbt_executable

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("dbt-parse")
    result = subprocess.run(
        [
            dbt_executable(),
            "parse",
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR),
            "--target-path",
            str(work),
            "--log-path",
            str(work),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    return json.loads((work / "manifest.json").read_text())


def test_billing_unit_test_covers_the_documented_examples(manifest: dict[str, Any]) -> None:
    tests = {t["name"]: t for t in manifest["unit_tests"].values()}
    billing = tests["billing_prices_the_documented_examples"]
    counts = {row["accepted_recipients"] for row in billing["given"][1]["rows"]}
    assert counts == {0, 10_000, 10_001, 25_000, 250_000}
    expected = {row["team_id"]: row["amount_usd"] for row in billing["expect"]["rows"]}
    assert expected["example_a"] == 3.75 and expected["example_b"] == 60.0
    assert "billing_usage_splits_on_utc_month_boundaries" in tests


def test_marts_have_grain_and_value_tests(manifest: dict[str, Any]) -> None:
    tested: dict[str, set[str]] = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] == "test":
            for parent in node["depends_on"]["nodes"]:
                tested.setdefault(parent, set()).add(node["test_metadata"]["name"])
    assert {"unique", "not_null", "accepted_values"} <= tested["model.kibamail.fct_message_events"]
    assert "relationships" in tested["model.kibamail.fct_email_opens"]
    for mart in ("fct_deliverability_daily", "fct_reputation_daily", "fct_billing_monthly"):
        assert "unique_combination_of_columns" in tested[f"model.kibamail.{mart}"]


def test_sources_have_freshness_and_incremental_models_are_incremental(
    manifest: dict[str, Any],
) -> None:
    source = manifest["sources"]["source.kibamail.kibamail.raw_message_events"]
    assert source["freshness"]["error_after"]["count"] == 24
    for name in ("fct_message_events", "fct_contact_activity", "fct_deliverability_daily"):
        assert (
            manifest["nodes"][f"model.kibamail.{name}"]["config"]["materialized"] == "incremental"
        )


def test_dbt_folder_is_not_a_python_package() -> None:
    assert not list(Path(DBT_PROJECT_DIR).rglob("__init__.py"))
