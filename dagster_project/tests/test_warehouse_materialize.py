"""Materialize the dbt assets through Dagster against the real warehouse (chDB gateway)."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from dagster_project.defs.billing.invoices import BillingCloseError, close_month
from dagster_project.jobs import close_billing, materialize_warehouse
from dagster_project.project import DBT_PROJECT_DIR, dbt_executable
from dagster_project.tests import warehouse_data as data
from kibamail.settings import Settings, settings_to_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]

OCTOBER = date(2026, 10, 1)


@pytest.fixture(scope="module")
def built(isolated_warehouse: Settings) -> Iterator[dict[str, Any]]:
    from kibamail.clients import clickhouse_client

    settings = isolated_warehouse
    client = clickhouse_client(settings)
    data.load_all(client, settings.clickhouse.database, settings.notifications.team_id)
    first = materialize_warehouse(settings)
    yield {"client": client, "db": settings.clickhouse.database, "first": first}


@pytest.fixture(scope="module")
def dbt_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One dbt target/log dir for the module's dbt CLI calls: after the first, dbt parses
    the project partially (seconds) instead of from scratch."""
    return tmp_path_factory.mktemp("dbt")


def scalar(built: dict[str, Any], sql: str) -> Any:
    return built["client"].query(sql.replace("{db}", built["db"])).result_rows[0][0]


def test_every_model_materialized_and_every_check_passed(built: dict[str, Any]) -> None:
    result = built["first"]
    assert result["success"], result["failed_steps"]
    for model in ("fct_message_events", "fct_billing_monthly", "fct_deliverability_daily",
                  "fct_reputation_daily", "fct_contact_activity", "fct_dmarc_daily"):  # fmt: skip
        assert result["assets"].get(model) == "materialized", model
    assert result["checks"], "dbt tests should surface as asset checks"
    assert all(result["checks"].values()), {k: v for k, v in result["checks"].items() if not v}
    assert result["checks"]["fct_message_events:message_events_fresh"] is True


def test_billing_mart_prices_the_examples(built: dict[str, Any]) -> None:
    rows = (
        built["client"]
        .query(
            f"SELECT team_id, accepted_recipients, billable_blocks, amount_micros, amount_usd"
            f" FROM {built['db']}.fct_billing_monthly WHERE billing_month = '2026-10-01'"
            f" AND team_id IN ('{data.TEAM_SMALL}', '{data.TEAM_EXAMPLE}') ORDER BY team_id"
        )
        .result_rows
    )
    assert rows == [
        (data.TEAM_EXAMPLE, 25_000, 15, 3_750_000, Decimal("3.75")),
        (data.TEAM_SMALL, 10_001, 1, 250_000, Decimal("0.25")),
    ]


def test_machine_opens_stay_out_of_the_open_rate(built: dict[str, Any]) -> None:
    row = (
        built["client"]
        .query(
            f"SELECT delivered, human_opens, machine_opens, unique_human_opens, open_rate"
            f" FROM {built['db']}.fct_deliverability_daily"
            f" WHERE team_id = '{data.TEAM_EXAMPLE}' AND event_date = '2026-10-01'"
            f" AND provider = 'google'"
        )
        .result_rows
    )
    assert row == [(10, 2, 3, 1, pytest.approx(0.1))]


def test_reputation_scores_the_sending_ip(built: dict[str, Any]) -> None:
    row = (
        built["client"]
        .query(
            f"SELECT delivered, bounce_rate, engagement_rate, reputation_score"
            f" FROM {built['db']}.fct_reputation_daily"
            f" WHERE team_id = '{data.TEAM_EXAMPLE}' AND source_ip = '192.0.2.10'"
        )
        .result_rows
    )
    # 10 delivered, no bounces/complaints, 1 unique human open -> 100 + min(10, 20 * 0.1)
    assert row == [(10, 0.0, pytest.approx(0.1), 100.0)]


def test_timeline_lists_a_contact_newest_first(built: dict[str, Any]) -> None:
    contact = "r0@gmail.com"
    rows = (
        built["client"]
        .query(
            f"SELECT activity FROM {built['db']}.fct_contact_activity"
            f" WHERE team_id = '{data.TEAM_EXAMPLE}' AND contact_key = '{contact}'"
            f" ORDER BY occurred_at DESC, activity"
        )
        .result_rows
    )
    assert [r[0] for r in rows] == [
        "opened",
        "opened",
        "opened_by_machine",
        "delivered",
        "accepted",
    ]


def test_dmarc_digest_reads_the_daily_mart(built: dict[str, Any]) -> None:
    from dagster_project.defs.dmarc.digest import load_digests

    digests = load_digests(built["client"], built["db"], date(2026, 10, 2))
    [digest] = digests[data.TEAM_EXAMPLE]
    assert digest.domain == data.DMARC_DOMAIN
    # 145 messages (the re-ingested report counts once), 140 pass, 2 source IPs.
    assert (digest.messages, digest.dmarc_pass, digest.sources) == (145, 140, 2)
    assert (digest.dkim_aligned, digest.spf_aligned, digest.quarantined) == (140, 100, 5)


def test_billing_close_is_idempotent_and_refuses_open_months(
    built: dict[str, Any], isolated_warehouse: Settings
) -> None:
    first = close_billing(isolated_warehouse, OCTOBER)
    assert first["success"], first["failed_steps"]
    assert first["checks"]["fct_billing_monthly:billed_totals_match_raw_counts"] is True
    invoices = f"SELECT team_id, amount_micros, lines FROM {built['db']}.billing_invoices FINAL"
    where = f" WHERE team_id IN ('{data.TEAM_SMALL}', '{data.TEAM_EXAMPLE}') ORDER BY team_id"
    before = built["client"].query(invoices + where).result_rows
    assert [(r[0], r[1]) for r in before] == [
        (data.TEAM_EXAMPLE, 3_750_000),
        (data.TEAM_SMALL, 250_000),
    ]

    again = close_month(built["client"], built["db"], OCTOBER, {data.TEAM_IDLE})
    assert set(again.created) == {data.TEAM_IDLE}  # only the idle team was missing
    assert data.TEAM_EXAMPLE in again.already_closed
    assert built["client"].query(invoices + where).result_rows == before
    idle_team = f"team_id = '{data.TEAM_IDLE}'"
    idle = scalar(
        built, f"SELECT amount_micros FROM {{db}}.billing_invoices FINAL WHERE {idle_team}"
    )
    assert idle == 0
    third = close_month(built["client"], built["db"], OCTOBER, {data.TEAM_IDLE})
    assert third.created == []

    with pytest.raises(BillingCloseError, match="not over"):
        close_month(
            built["client"], built["db"], date(2026, 11, 1), now=datetime(2026, 11, 28, tzinfo=UTC)
        )


def test_duplicates_and_late_events_never_double_count(
    built: dict[str, Any], isolated_warehouse: Settings
) -> None:
    db, client = built["db"], built["client"]
    # Redeliver 500 accepted events (same event_id, later ingested_at) and 2 opens.
    client.command(
        f"INSERT INTO {db}.raw_message_events SELECT * REPLACE (now64(3) AS ingested_at)"
        f" FROM {db}.raw_message_events WHERE team_id = '{data.TEAM_SMALL}' LIMIT 500"
    )
    client.command(
        f"INSERT INTO {db}.raw_email_opens SELECT * REPLACE (now64(3) AS ingested_at)"
        f" FROM {db}.raw_email_opens WHERE team_id = '{data.TEAM_EXAMPLE}' LIMIT 2"
    )
    # A late delivery event for October arrives after the first build.
    data.insert_deliveries(client, db, data.TEAM_SMALL, 1, f"{data.RUN}late")
    second = materialize_warehouse(isolated_warehouse)
    assert second["success"], second["failed_steps"]
    small = f"team_id = '{data.TEAM_SMALL}'"
    example = f"team_id = '{data.TEAM_EXAMPLE}'"
    first_day = "event_date = '2026-10-01' AND provider = 'google'"
    billing = "{db}.fct_billing_monthly"
    deliverability = "{db}.fct_deliverability_daily"
    assert scalar(built, f"SELECT count() FROM {{db}}.fct_message_events WHERE {small}") == 10_002
    assert scalar(built, f"SELECT sum(accepted_recipients) FROM {billing} WHERE {small}") == 10_001
    assert (
        scalar(built, f"SELECT delivered FROM {deliverability} WHERE {small} AND {first_day}") == 1
    )
    opens = f"SELECT human_opens FROM {deliverability} WHERE {example} AND {first_day}"
    assert scalar(built, opens) == 2
    assert scalar(built, f"SELECT count() FROM {{db}}.fct_email_opens WHERE {example}") == 5


def test_platform_notifications_are_not_billed(
    built: dict[str, Any], isolated_warehouse: Settings
) -> None:
    platform = isolated_warehouse.notifications.team_id
    where = f"team_id = '{platform}'"
    assert scalar(built, f"SELECT count() FROM {{db}}.fct_message_events WHERE {where}") == 12_000
    assert scalar(built, f"SELECT count() FROM {{db}}.fct_billing_monthly WHERE {where}") == 0
    assert scalar(built, f"SELECT count() FROM {{db}}.int_billing_usage_monthly WHERE {where}") == 0
    # ...and the billed-totals check, which leaves the platform team out of the raw side
    # too, passed in the first build (test_every_model_materialized_and_every_check_passed).


def test_a_late_duplicate_after_an_incremental_run_is_not_counted(
    built: dict[str, Any], isolated_warehouse: Settings
) -> None:
    """Redelivered copies of long-loaded events, ingested after an incremental run."""
    db, client = built["db"], built["client"]
    small = f"team_id = '{data.TEAM_SMALL}'"
    example = f"team_id = '{data.TEAM_EXAMPLE}'"
    marts = {
        "events": f"SELECT count() FROM {{db}}.fct_message_events WHERE {small}",
        "billed": f"SELECT sum(accepted_recipients) FROM {{db}}.fct_billing_monthly WHERE {small}",
        "sent": f"SELECT sum(sent) FROM {{db}}.fct_deliverability_daily WHERE {small}",
        "opens": f"SELECT sum(human_opens) FROM {{db}}.fct_deliverability_daily WHERE {example}",
        "timeline": f"SELECT count() FROM {{db}}.fct_contact_activity WHERE {example}",
        "delivered": f"SELECT sum(delivered) FROM {{db}}.fct_reputation_daily WHERE {example}",
    }
    incremental = materialize_warehouse(isolated_warehouse)  # nothing new: a no-op run
    assert incremental["success"], incremental["failed_steps"]
    before = {name: scalar(built, sql) for name, sql in marts.items()}

    for table, team in (("raw_message_events", data.TEAM_SMALL),
                        ("raw_message_events", data.TEAM_EXAMPLE),
                        ("raw_email_opens", data.TEAM_EXAMPLE)):  # fmt: skip
        client.command(
            f"INSERT INTO {db}.{table} SELECT * REPLACE (now64(3) AS ingested_at)"
            f" FROM {db}.{table} WHERE team_id = '{team}' LIMIT 20"
        )
    after_run = materialize_warehouse(isolated_warehouse)
    assert after_run["success"], after_run["failed_steps"]
    assert {name: scalar(built, sql) for name, sql in marts.items()} == before


def test_dbt_unit_tests_pass(isolated_warehouse: Settings, dbt_work: Path) -> None:
    """The scheduled builds leave unit tests out (fixed inputs); they run here, in CI."""
    result = subprocess.run(
        [dbt_executable(), "test", "--select", "test_type:unit",
         "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
         "--target-path", str(dbt_work / "target"), "--log-path", str(dbt_work / "logs")],
        env={**os.environ, **settings_to_env(isolated_warehouse)},
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    for unit_test in ("billing_prices_the_documented_examples",
                      "deliverability_keeps_machine_opens_out_of_rates",
                      "billing_usage_splits_on_utc_month_boundaries"):  # fmt: skip
        assert re.search(rf"PASS \w+::{unit_test}\b", result.stdout), result.stdout[-3000:]


def test_source_freshness_reads_the_raw_tables(
    built: dict[str, Any], isolated_warehouse: Settings, tmp_path: Path, dbt_work: Path
) -> None:
    """`dbt source freshness` runs against the warehouse: fresh data passes, stale data
    is reported as such (not an error of the command)."""
    result = subprocess.run(
        [dbt_executable(), "source", "freshness", "--select", "source:kibamail.raw_message_events",
         "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
         "--output", str(tmp_path / "sources.json"), "--target-path", str(dbt_work / "target"),
         "--log-path", str(dbt_work / "logs")],
        env={**os.environ, **settings_to_env(isolated_warehouse)},
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    import json

    report = json.loads((tmp_path / "sources.json").read_text())
    [source] = report["results"]
    assert source["unique_id"].endswith("raw_message_events"), source
    newest = scalar(built, "SELECT max(ingested_at) FROM {db}.raw_message_events")
    age_hours = (datetime.now(UTC).replace(tzinfo=None) - newest).total_seconds() / 3600
    expected = "pass" if age_hours < 2 else ("warn" if age_hours < 24 else "error")
    assert source["status"] == expected, (source, result.stdout[-2000:])
    assert result.returncode == (1 if expected == "error" else 0), result.stdout[-2000:]


def dbt_cli(settings: Settings, dbt_work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [dbt_executable(), *args, "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir",
         str(DBT_PROJECT_DIR), "--target-path", str(dbt_work / "target"), "--log-path",
         str(dbt_work / "logs")],
        env={**os.environ, **settings_to_env(settings)},
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip


def test_a_bad_row_fails_every_run_until_fixed(
    built: dict[str, Any], isolated_warehouse: Settings, dbt_work: Path
) -> None:
    """Incremental runs test only rows no passing run has checked (dbt/macros/
    data_tests_on_unchecked_rows.sql): a bad row fails the run that loads it and every
    later run until it is fixed; a full refresh tests the whole table."""
    db, client = built["db"], built["client"]
    team = f"wh_{data.RUN}_bad"
    client.command(
        f"INSERT INTO {db}.raw_message_events (event_id, event_version, team_id, occurred_at,"
        f" message_id, status, recipient, recipient_domain, kind, tags) VALUES ('{team}e1', 1,"
        f" '{team}', '2026-10-05 10:00:00', '{team}m1', 'bogus', 'r@gmail.com', 'gmail.com',"
        f" 'marketing', [])"
    )
    build = ("build", "--select", "fct_message_events", "--exclude-resource-type", "unit_test")
    status_test = "accepted_values_fct_message_events_status"
    for _ in range(2):  # loaded by the first run, still unchecked in the second
        result = dbt_cli(isolated_warehouse, dbt_work, *build)
        assert result.returncode == 1, result.stdout[-3000:]
        assert f"FAIL 1 {status_test}" in result.stdout, result.stdout[-3000:]

    # uniqueness on an incremental run: every row sharing a key with an unchecked row
    unique_test = "unique_fct_message_events_event_id"
    [compiled] = (dbt_work / "target" / "compiled").rglob(f"{unique_test}.sql")
    restricted = "event_id in (select event_id from"
    assert restricted in compiled.read_text() and "loaded_by_run not in" in compiled.read_text()
    whole = dbt_cli(
        isolated_warehouse, dbt_work, "compile", "--full-refresh", "--select", unique_test
    )
    assert whole.returncode == 0 and "loaded_by_run" not in whole.stdout, whole.stdout[-3000:]

    for table in ("raw_message_events", "fct_message_events"):
        client.command(f"DELETE FROM {db}.{table} WHERE team_id = '{team}'")
    fixed = dbt_cli(isolated_warehouse, dbt_work, *build)
    assert fixed.returncode == 0, fixed.stdout[-3000:]
    assert f"PASS {status_test}" in fixed.stdout, fixed.stdout[-3000:]
