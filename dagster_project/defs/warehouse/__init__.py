"""Warehouse domain: dbt models as assets, their schedule, sensor and freshness checks."""

from __future__ import annotations

import dagster as dg

from dagster_project.defs.warehouse.assets import dbt_resource, kibamail_dbt_assets
from dagster_project.defs.warehouse.automation import (
    hourly_warehouse_job,
    hourly_warehouse_schedule,
    new_raw_events_sensor,
)
from dagster_project.defs.warehouse.checks import message_events_fresh
from dagster_project.resources import WarehouseResource

# Every dbt model, its tests and the freshness check: what the demo and ops run by hand.
warehouse_build_job = dg.define_asset_job(
    "warehouse_build", selection=dg.AssetSelection.assets(kibamail_dbt_assets)
)

defs = dg.Definitions(
    assets=[kibamail_dbt_assets],
    asset_checks=[message_events_fresh],
    jobs=[hourly_warehouse_job, warehouse_build_job],
    schedules=[hourly_warehouse_schedule],
    sensors=[new_raw_events_sensor],
    resources={"dbt": dbt_resource(), "warehouse": WarehouseResource()},
)
