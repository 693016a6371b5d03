"""The dbt project as Dagster assets (one asset per model, dbt tests as asset checks).

Scheduled runs build models and run their data tests; dbt unit tests (fixed inputs, so
their outcome never depends on the data) run in CI and `make test`
(dagster_project/tests/test_warehouse_materialize.py), as dbt recommends, not every hour.
"""

from collections.abc import Iterator
from typing import Any

from dagster import AssetExecutionContext
from dagster_dbt import DbtCliResource, dbt_assets

from dagster_project.project import dbt_executable, ensure_manifest, warehouse_project

ensure_manifest()

BUILD_ARGS = ["build", "--exclude-resource-type", "unit_test"]


@dbt_assets(manifest=warehouse_project.manifest_path, project=warehouse_project)
def kibamail_dbt_assets(context: AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
    """`dbt build` of the selected models and their data tests."""
    yield from dbt.cli(BUILD_ARGS, context=context).stream()


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(
        project_dir=warehouse_project,
        profiles_dir=str(warehouse_project.profiles_dir),
        dbt_executable=dbt_executable(),
    )
