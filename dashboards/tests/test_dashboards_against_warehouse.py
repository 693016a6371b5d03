"""Dashboards validate against Grafana's schema, and every panel's SQL runs on real marts
(message events, opens and clicks, and DMARC aggregate-report records)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bench.models_data import SyntheticBatch, dmarc_records_sql, load
from dagster_project.defs.billing.invoices import close_month, previous_month
from dagster_project.project import DBT_PROJECT_DIR, dbt_executable
from dashboards.boards import DASHBOARDS
from dashboards.clickhouse import expand_macros, panel_queries
from dashboards.render import render_dashboard
from dashboards.schema_check import SchemaCheckError, check_dashboards
from kibamail.settings import Settings, settings_to_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def demo_marts(
    warehouse_service: Any, test_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, str]]:
    """A database of its own with demo-like data and every dbt model built on it."""
    from kibamail.clients import clickhouse_client, migrate_warehouse

    database = f"dash_{uuid.uuid4().hex[:8]}"
    clickhouse = test_settings.clickhouse.model_copy(update={"database": database})
    settings = test_settings.model_copy(update={"clickhouse": clickhouse})
    migrate_warehouse(settings)
    client = clickhouse_client(settings)
    start = (NOW - timedelta(days=40)).replace(tzinfo=None)
    load(client, database, SyntheticBatch(30_000, 4_000, 2_000, start=start, days=40))
    client.command(dmarc_records_sql(database, start, days=40, rows=2_000))
    work = tmp_path_factory.mktemp("dbt")
    result = subprocess.run(
        [
            dbt_executable(),
            "run",
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR),
            "--target-path",
            str(work / "target"),
            "--log-path",
            str(work / "logs"),
        ],
        env={**os.environ, **settings_to_env(settings)},
        capture_output=True,
        text=True,
        check=False,
        timeout=800,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    close_month(client, database, previous_month(NOW.date()))
    yield client, database
    client.command(f"DROP DATABASE IF EXISTS {database}")


QUERIES = [
    (name, title, query)
    for name, build in sorted(DASHBOARDS.items())
    for title, query in panel_queries(build().build())
]


@pytest.mark.parametrize(
    ("name", "title", "query"), QUERIES, ids=[f"{n}:{t}" for n, t, _ in QUERIES]
)
def test_panel_sql_runs_and_returns_rows(
    demo_marts: tuple[Any, str], name: str, title: str, query: str
) -> None:
    client, database = demo_marts
    expanded = expand_macros(query, NOW - timedelta(days=60), NOW, database)
    rows = client.query(expanded).result_rows
    assert rows, f"{name} / {title} returned no rows on demo data"


def test_dashboards_validate_against_grafana_schema() -> None:
    check_dashboards({name: render_dashboard(name) for name in DASHBOARDS})


def test_schema_check_rejects_a_broken_dashboard() -> None:
    broken = render_dashboard("billing").replace('"graphTooltip": 0', '"graphTooltip": "often"')
    with pytest.raises(SchemaCheckError, match="DashboardCursorSync"):
        check_dashboards({"broken": broken})


def test_expand_macros_fills_the_time_range() -> None:
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    out = expand_macros("WHERE $__timeFilter(event_date) AND x < $__toTime", start, end, "db")
    assert out == (
        "WHERE event_date >= toDateTime(1767225600) AND event_date <= toDateTime(1767312000)"
        " AND x < toDateTime(1767312000)"
    )
    assert Path(DBT_PROJECT_DIR).exists()
