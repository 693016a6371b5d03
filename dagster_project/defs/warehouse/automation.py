"""When the warehouse models run: hourly for the operational marts, and on new data."""

import dagster as dg
from dagster_dbt import build_schedule_from_dbt_selection

from dagster_project.defs.warehouse.assets import kibamail_dbt_assets
from dagster_project.resources import WarehouseResource

HOURLY_SELECTION = (
    "+fct_deliverability_daily +fct_reputation_daily +fct_contact_activity +fct_bounces_daily"
)
RAW_TABLES = ("raw_message_events", "raw_email_opens", "raw_email_clicks", "raw_unsubscribes")

hourly_warehouse_schedule = build_schedule_from_dbt_selection(
    [kibamail_dbt_assets],
    job_name="hourly_deliverability_reputation",
    cron_schedule="5 * * * *",
    dbt_select=HOURLY_SELECTION,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
hourly_warehouse_job = hourly_warehouse_schedule.job


def newest_raw_ingest(warehouse: WarehouseResource) -> str:
    """Newest ingested_at over the raw event tables, as a sortable string cursor."""
    db = warehouse.database
    union = " UNION ALL ".join(f"SELECT max(ingested_at) AS m FROM {db}.{t}" for t in RAW_TABLES)
    value = warehouse.client().query(f"SELECT toString(max(m)) FROM ({union})").result_rows[0][0]
    return str(value)


@dg.sensor(
    job=hourly_warehouse_job,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def new_raw_events_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.SensorResult:
    """Refresh the operational marts when raw events arrived since the last refresh."""
    newest = newest_raw_ingest(warehouse)
    if context.cursor and newest <= context.cursor:
        return dg.SensorResult(skip_reason=f"no raw events ingested after {context.cursor}")
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=newest)], cursor=newest)
