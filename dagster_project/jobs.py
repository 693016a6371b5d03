"""In-process entry points for the demo and tests: run the Dagster jobs right now.

They execute the same definitions the daemon schedules (so checks and dbt tests run
too), against the warehouse the given Settings point at.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

from kibamail.settings import Settings, get_settings, settings_to_env


@contextmanager
def settings_in_environment(settings: Settings) -> Iterator[None]:
    """dbt and the resources read KIBAMAIL_* at run time: point them at `settings`."""
    saved = dict(os.environ)
    os.environ.update(settings_to_env(settings))
    get_settings.cache_clear()
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()


def _summarize(result: Any) -> dict[str, Any]:
    """success + per-asset status + per-check outcome of one in-process run."""
    import dagster as dg

    assets: dict[str, str] = {}
    checks: dict[str, bool] = {}
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            assets[event.asset_key.to_user_string()] = "materialized"
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            key = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
            checks[key] = bool(evaluation.passed)
    failed_steps = [
        event.step_key for event in result.all_events if event.event_type_value == "STEP_FAILURE"
    ]
    return {
        "success": bool(result.success),
        "assets": assets,
        "checks": checks,
        "failed_steps": failed_steps,
    }


def run_job(settings: Settings, job_name: str, run_config: dict[str, Any] | None = None) -> dict:
    import dagster as dg

    with settings_in_environment(settings):
        from dagster_project.definitions import defs

        job = defs.resolve_job_def(job_name)
        with dg.DagsterInstance.ephemeral() as instance:
            result = job.execute_in_process(
                run_config=run_config or {}, instance=instance, raise_on_error=False
            )
        return _summarize(result)


def materialize_warehouse(settings: Settings | None = None) -> dict[str, Any]:
    """`dbt build` of every model through Dagster; returns success and per-asset status."""
    return run_job(settings or get_settings(), "warehouse_build")


def close_billing(settings: Settings | None = None, month: date | None = None) -> dict[str, Any]:
    """Run the monthly billing close job (dbt billing models, then invoices) for a month."""
    config = {"month": f"{month:%Y-%m}"} if month else {}
    return run_job(
        settings or get_settings(),
        "monthly_billing_close",
        {"ops": {"billing_invoices": {"config": config}}},
    )


def send_dmarc_digests(settings: Settings | None = None, day: date | None = None) -> dict[str, Any]:
    """Run the daily DMARC digest job for a day (default yesterday, UTC)."""
    config = {"day": day.isoformat()} if day else {}
    return run_job(
        settings or get_settings(),
        "daily_dmarc_digest",
        {"ops": {"dmarc_digest_emails": {"config": config}}},
    )


def billing_table(settings: Settings | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Billing lines, newest month first (what the demo prints)."""
    return _rows(
        settings or get_settings(),
        "SELECT team_id, toString(billing_month) AS month, accepted_recipients,"
        " billable_blocks, toString(amount_usd) AS amount_usd FROM {db}.fct_billing_monthly"
        " ORDER BY billing_month DESC, accepted_recipients DESC LIMIT {limit}",
        limit,
    )


def top_reputation(settings: Settings | None = None, limit: int = 10) -> list[dict[str, Any]]:
    """Lowest reputation scores of the latest day with traffic (the demo's 'top lines')."""
    return _rows(
        settings or get_settings(),
        "SELECT team_id, toString(event_date) AS day, sender_domain, source_ip, attempts,"
        " round(bounce_rate, 4) AS bounce_rate, round(complaint_rate, 4) AS complaint_rate,"
        " reputation_score FROM {db}.fct_reputation_daily"
        " ORDER BY event_date DESC, reputation_score ASC, attempts DESC LIMIT {limit}",
        limit,
    )


def _rows(settings: Settings, template: str, limit: int) -> list[dict[str, Any]]:
    from kibamail.clients import clickhouse_client

    query = template.format(db=settings.clickhouse.database, limit=int(limit))
    result = clickhouse_client(settings).query(query)
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]
