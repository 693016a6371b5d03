"""The Dagster definitions load, and schedules/sensors ask for the right runs."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import dagster as dg
import pytest

from dagster_project.definitions import defs
from dagster_project.defs.billing.invoices import (
    BillingCloseError,
    close_month,
    invoice_id,
    invoice_lines,
    previous_month,
)
from dagster_project.defs.warehouse.automation import new_raw_events_sensor
from dagster_project.resources import WarehouseResource

pytestmark = pytest.mark.unit


def test_definitions_have_the_jobs_schedules_and_sensor() -> None:
    jobs = {job.name for job in defs.resolve_all_job_defs()}
    assert {"warehouse_build", "hourly_deliverability_reputation", "monthly_billing_close",
            "daily_dmarc_digest"} <= jobs  # fmt: skip
    schedules = {s.name: s.cron_schedule for s in defs.schedules}
    assert schedules == {
        "hourly_deliverability_reputation_schedule": "5 * * * *",
        "monthly_billing_close_schedule": "0 2 1 * *",
        "daily_dmarc_digest_schedule": "0 6 * * *",
        "domain_recheck_schedule": "20 * * * *",
    }
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"fct_billing_monthly", "fct_reputation_daily", "billing_invoices",
            "dmarc_digest_emails"} <= keys  # fmt: skip


def test_monthly_close_closes_the_month_that_just_ended() -> None:
    schedule = defs.get_schedule_def("monthly_billing_close_schedule")
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 1, 1, 2, tzinfo=UTC)
    )
    requests = schedule.evaluate_tick(context).run_requests
    assert requests
    request = requests[0]
    assert request.run_key == "billing-close-2025-12"
    assert request.run_config == {"ops": {"billing_invoices": {"config": {"month": "2025-12"}}}}


def test_previous_month_and_invoice_math() -> None:
    assert previous_month(date(2026, 1, 15)) == date(2025, 12, 1)
    assert previous_month(date(2026, 3, 1)) == date(2026, 2, 1)
    assert invoice_id("t1", date(2026, 2, 1)) == "inv_202602_t1"
    lines = invoice_lines(25_000, 15)
    assert lines[0]["quantity"] == 10_000
    assert lines[1]["amount_micros"] == 3_750_000


def test_close_refuses_the_running_month_before_touching_the_warehouse() -> None:
    class Untouchable:
        def query(self, *_: Any, **__: Any) -> Any:
            raise AssertionError("must not query")

    with pytest.raises(BillingCloseError, match="2026-11"):
        close_month(Untouchable(), "db", date(2026, 11, 1), now=datetime(2026, 11, 30, tzinfo=UTC))


class FakeResult:
    def __init__(self, rows: list[tuple]) -> None:
        self.result_rows = rows


class FakeWarehouse(WarehouseResource):
    newest: str = "2026-11-01 00:00:00.000"

    def client(self) -> Any:
        newest = self.newest

        class Client:
            def query(self, _sql: str) -> FakeResult:
                return FakeResult([(newest,)])

        return Client()


def test_sensor_requests_a_refresh_only_for_new_raw_events() -> None:
    warehouse = FakeWarehouse()
    first = new_raw_events_sensor(dg.build_sensor_context(cursor=None), warehouse=warehouse)
    assert [r.run_key for r in first.run_requests] == ["2026-11-01 00:00:00.000"]
    assert first.cursor == "2026-11-01 00:00:00.000"
    same = new_raw_events_sensor(dg.build_sensor_context(cursor=first.cursor), warehouse=warehouse)
    assert not same.run_requests
    assert same.skip_reason is not None
    assert "no raw events" in str(same.skip_reason.skip_message)
    newer = FakeWarehouse(newest="2026-11-01 00:05:00.000")
    later = new_raw_events_sensor(dg.build_sensor_context(cursor=first.cursor), warehouse=newer)
    assert [r.run_key for r in later.run_requests] == ["2026-11-01 00:05:00.000"]


@pytest.mark.parametrize(
    ("schedule_name", "tick", "job_name"),
    [
        ("hourly_deliverability_reputation_schedule", datetime(2026, 3, 9, 14, 5, tzinfo=UTC),
         "hourly_deliverability_reputation"),
        ("daily_dmarc_digest_schedule", datetime(2026, 3, 9, 6, tzinfo=UTC),
         "daily_dmarc_digest"),
        ("domain_recheck_schedule", datetime(2026, 3, 9, 14, 20, tzinfo=UTC), "domain_recheck"),
        ("monthly_billing_close_schedule", datetime(2026, 3, 1, 2, tzinfo=UTC),
         "monthly_billing_close"),
    ],
)  # fmt: skip
def test_every_schedule_asks_for_a_run_of_its_job_and_is_on_by_default(
    schedule_name: str, tick: datetime, job_name: str
) -> None:
    schedule = defs.get_schedule_def(schedule_name)
    assert schedule.job_name == job_name
    assert schedule.execution_timezone == "UTC"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    result = schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=tick))
    assert result.skip_message is None
    assert len(result.run_requests or []) == 1
    assert defs.resolve_job_def(job_name) is not None
