"""Asset checks the dbt tests cannot express: data freshness against the raw tables."""

import dagster as dg
from dagster_dbt import get_asset_key_for_model

from dagster_project.defs.warehouse.assets import kibamail_dbt_assets
from dagster_project.resources import WarehouseResource

# The mart may trail the raw table by at most this much before the check fails: the
# hourly schedule plus a run's duration.
MAX_MART_LAG_MINUTES = 90

MESSAGE_EVENTS_KEY = get_asset_key_for_model([kibamail_dbt_assets], "fct_message_events")


@dg.asset_check(asset=MESSAGE_EVENTS_KEY, blocking=False)
def message_events_fresh(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """fct_message_events keeps up with raw_message_events (lag in minutes of ingest time)."""
    db = warehouse.database
    row = (
        warehouse.client()
        .query(
            f"SELECT (SELECT max(ingested_at) FROM {db}.raw_message_events),"
            f" (SELECT max(ingested_at) FROM {db}.fct_message_events),"
            f" (SELECT count() FROM {db}.raw_message_events)"
        )
        .result_rows[0]
    )
    raw_newest, mart_newest, raw_rows = row
    if raw_rows == 0:
        return dg.AssetCheckResult(passed=True, metadata={"raw_rows": 0, "lag_minutes": 0.0})
    lag_minutes = max(0.0, (raw_newest - mart_newest).total_seconds() / 60)
    return dg.AssetCheckResult(
        passed=lag_minutes <= MAX_MART_LAG_MINUTES,
        metadata={
            "raw_newest_ingested_at": str(raw_newest),
            "mart_newest_ingested_at": str(mart_newest),
            "lag_minutes": round(lag_minutes, 2),
            "max_lag_minutes": MAX_MART_LAG_MINUTES,
        },
    )
