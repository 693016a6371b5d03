"""The dbt project as Dagster assets (one asset per model, dbt tests as asset checks)."""

from collections.abc import Iterator
from typing import Any

from dagster import AssetExecutionContext
from dagster_dbt import DbtCliResource, dbt_assets

from dagster_project.project import dbt_executable, ensure_manifest, warehouse_project

ensure_manifest()


@dbt_assets(manifest=warehouse_project.manifest_path, project=warehouse_project)
def kibamail_dbt_assets(context: AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
    """`dbt build` of the selected models: models, their tests and unit tests together."""
    yield from dbt.cli(["build"], context=context).stream()


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(
        project_dir=warehouse_project,
        profiles_dir=str(warehouse_project.profiles_dir),
        dbt_executable=dbt_executable(),
    )
