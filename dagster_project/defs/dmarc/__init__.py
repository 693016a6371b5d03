"""DMARC domain: the daily digest emailed to each team's Administrators."""

from collections import Counter
from datetime import UTC, date, datetime, timedelta

import dagster as dg
from dagster import AssetExecutionContext
from dagster_dbt import build_dbt_asset_selection, get_asset_key_for_model

from dagster_project.defs.dmarc.digest import load_digests, send_digests, team_administrators
from dagster_project.defs.warehouse.assets import kibamail_dbt_assets
from dagster_project.resources import SendingResource, WarehouseResource

DMARC_MART_KEY = get_asset_key_for_model([kibamail_dbt_assets], "fct_dmarc_daily")


class DigestConfig(dg.Config):
    """Day to report as YYYY-MM-DD; empty means yesterday (UTC)."""

    day: str = ""


def digest_day(value: str) -> date:
    if not value:
        return datetime.now(UTC).date() - timedelta(days=1)
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise dg.Failure(f"digest day must look like 2026-10-31, got {value!r}") from exc


@dg.asset(deps=[DMARC_MART_KEY], group_name="dmarc")
def dmarc_digest_emails(
    context: AssetExecutionContext,
    config: DigestConfig,
    warehouse: WarehouseResource,
    sending: SendingResource,
) -> dg.MaterializeResult:
    """Queue yesterday's DMARC digest to every team with reports (once per team and day)."""
    settings = sending.settings()
    day = digest_day(config.day)
    digests = load_digests(warehouse.client(), warehouse.database, day)
    admins = team_administrators(settings.database.url) if digests else {}
    outcome = send_digests(sending.redis(), settings, digests, admins, day)
    context.log.info(f"DMARC digests for {day}: {outcome}")
    counts = Counter(outcome.values())
    return dg.MaterializeResult(metadata={"day": day.isoformat(), **counts})


dmarc_digest_job = dg.define_asset_job(
    "daily_dmarc_digest",
    selection=dg.AssetSelection.assets(dmarc_digest_emails)
    | build_dbt_asset_selection([kibamail_dbt_assets], dbt_select="+fct_dmarc_daily"),
)

dmarc_digest_schedule = dg.ScheduleDefinition(
    job=dmarc_digest_job,
    cron_schedule="0 6 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

defs = dg.Definitions(
    assets=[dmarc_digest_emails],
    jobs=[dmarc_digest_job],
    schedules=[dmarc_digest_schedule],
    resources={"sending": SendingResource()},
)
