"""Billing domain: the monthly close (invoices), its schedule and the billed-totals check."""

from datetime import UTC, date, datetime

import dagster as dg
from dagster import AssetExecutionContext
from dagster_dbt import build_dbt_asset_selection, get_asset_key_for_model

from dagster_project.defs.billing.invoices import api_team_ids, close_month, previous_month
from dagster_project.defs.warehouse.assets import kibamail_dbt_assets
from dagster_project.resources import WarehouseResource

BILLING_MART_KEY = get_asset_key_for_model([kibamail_dbt_assets], "fct_billing_monthly")


class BillingCloseConfig(dg.Config):
    """Month to close as YYYY-MM; empty means the previous UTC month."""

    month: str = ""


def parse_month(value: str, today: date) -> date:
    if not value:
        return previous_month(today)
    try:
        return datetime.strptime(value, "%Y-%m").date()
    except ValueError as exc:
        raise dg.Failure(f"billing month must look like 2026-10, got {value!r}") from exc


# An unreachable accounts database fails the run (and Dagster retries it) rather than
# closing the month for the teams with traffic only: a partial close would freeze zero
# invoices for nobody and miss every idle team's.
BILLING_RETRY = dg.RetryPolicy(max_retries=3, delay=60, backoff=dg.Backoff.EXPONENTIAL)


@dg.asset(deps=[BILLING_MART_KEY], group_name="billing", retry_policy=BILLING_RETRY)
def billing_invoices(
    context: AssetExecutionContext, config: BillingCloseConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Invoices of a closed month, frozen from fct_billing_monthly (idempotent per team)."""
    settings = warehouse.settings()
    month = parse_month(config.month, datetime.now(UTC).date())
    try:
        known = api_team_ids(settings.database.url)
    except Exception as exc:
        raise dg.Failure(
            f"accounts database unreachable, month {month:%Y-%m} not closed: {exc}"
        ) from exc
    result = close_month(warehouse.client(), warehouse.database, month, known)
    context.log.info(f"billing close {result.as_dict()}")
    return dg.MaterializeResult(metadata=result.as_dict())


@dg.asset_check(asset=BILLING_MART_KEY, blocking=True)
def billed_totals_match_raw_counts(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """Accepted recipients billed per month equal the distinct accepted pairs in the raw table.

    Platform notifications (settings.notifications.team_id) are not billed, so they are
    left out of the raw side too. No FINAL: a redelivered copy repeats its pair, which
    uniqExact counts once anyway."""
    db = warehouse.database
    platform_team = warehouse.settings().notifications.team_id
    query = f"""
        SELECT coalesce(billed.billing_month, raw.billing_month) AS month,
               billed.n AS billed, raw.n AS raw
        FROM (
            SELECT billing_month, sum(accepted_recipients) AS n
            FROM {db}.fct_billing_monthly GROUP BY billing_month
        ) AS billed
        FULL OUTER JOIN (
            SELECT toStartOfMonth(occurred_at) AS billing_month,
                   uniqExact(message_id, lower(recipient)) AS n
            FROM {db}.raw_message_events
            WHERE status = 'accepted' AND team_id != {{platform_team:String}}
              AND ingested_at <= (SELECT max(ingested_at) FROM {db}.fct_message_events)
            GROUP BY billing_month
        ) AS raw USING (billing_month)
        SETTINGS join_use_nulls = 1
    """
    rows = warehouse.client().query(query, parameters={"platform_team": platform_team}).result_rows
    mismatches = {
        str(month): (billed, raw) for month, billed, raw in rows if (billed or 0) != (raw or 0)
    }
    return dg.AssetCheckResult(
        passed=not mismatches,
        metadata={"months": len(rows), "mismatches": str(mismatches)[:2000]},
    )


billing_close_job = dg.define_asset_job(
    "monthly_billing_close",
    selection=dg.AssetSelection.assets(billing_invoices)
    | build_dbt_asset_selection([kibamail_dbt_assets], dbt_select="+fct_billing_monthly")
    | dg.AssetSelection.checks(billed_totals_match_raw_counts),
)


@dg.schedule(
    job=billing_close_job,
    cron_schedule="0 2 1 * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def monthly_billing_close_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """On the 1st at 02:00 UTC, close the month that just ended."""
    month = previous_month(context.scheduled_execution_time.astimezone(UTC).date())
    return dg.RunRequest(
        run_key=f"billing-close-{month:%Y-%m}",
        run_config={"ops": {"billing_invoices": {"config": {"month": f"{month:%Y-%m}"}}}},
    )


defs = dg.Definitions(
    assets=[billing_invoices],
    asset_checks=[billed_totals_match_raw_counts],
    jobs=[billing_close_job],
    schedules=[monthly_billing_close_schedule],
)
