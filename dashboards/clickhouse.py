"""A small ClickHouse query type for grafana-foundation-sdk (it ships none).

Targets the grafana-clickhouse-datasource plugin (v4): raw SQL in `rawSql`, the SQL
editor, and `format`/`queryType` telling Grafana whether rows are a table or a time
series. Panel SQL may use the plugin's macros `$__timeFilter(column)`, `$__fromTime`
and `$__toTime`; `expand_macros` gives the SQL the tests run against the warehouse.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import IntEnum
from typing import Any, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

PLUGIN_ID = "grafana-clickhouse-datasource"
DATASOURCE_UID = "kibamail-clickhouse"
PROMETHEUS_UID = "kibamail-prometheus"

CLICKHOUSE = dashboard.DataSourceRef(type_val=PLUGIN_ID, uid=DATASOURCE_UID)
PROMETHEUS = dashboard.DataSourceRef(type_val="prometheus", uid=PROMETHEUS_UID)


class Format(IntEnum):
    """The plugin's result formats."""

    TIME_SERIES = 0
    TABLE = 1


class ClickHouseQuery(cogvariants.Dataquery):
    def __init__(self, ref_id: str = "A", raw_sql: str = "", fmt: Format = Format.TABLE) -> None:
        self.ref_id = ref_id
        self.raw_sql = raw_sql
        self.format = fmt

    def to_json(self) -> dict[str, object]:
        return {
            "refId": self.ref_id,
            "datasource": CLICKHOUSE,
            "editorType": "sql",
            "rawSql": self.raw_sql,
            "format": int(self.format),
            "queryType": "timeseries" if self.format == Format.TIME_SERIES else "table",
        }


class ClickHouseQueryBuilder(cogbuilder.Builder[ClickHouseQuery]):
    def __init__(self) -> None:
        self._internal = ClickHouseQuery()

    def build(self) -> ClickHouseQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def raw_sql(self, sql: str) -> Self:
        self._internal.raw_sql = sql.strip()
        return self

    def format(self, fmt: Format) -> Self:
        self._internal.format = fmt
        return self


def sql(query: str, fmt: Format = Format.TABLE, ref_id: str = "A") -> ClickHouseQueryBuilder:
    return ClickHouseQueryBuilder().raw_sql(query).format(fmt).ref_id(ref_id)


_TIME_FILTER = re.compile(r"\$__timeFilter\(([^)]+)\)")


def expand_macros(query: str, start: datetime, end: datetime, database: str) -> str:
    """What the plugin sends for a time range: macros and the database name filled in."""
    start_s, end_s = int(start.timestamp()), int(end.timestamp())
    query = _TIME_FILTER.sub(
        lambda m: f"{m.group(1)} >= toDateTime({start_s}) AND {m.group(1)} <= toDateTime({end_s})",
        query,
    )
    query = query.replace("$__fromTime", f"toDateTime({start_s})")
    query = query.replace("$__toTime", f"toDateTime({end_s})")
    return query.replace("${database}", database)


def panel_queries(board: Any) -> list[tuple[str, str]]:
    """(panel title, raw SQL) of every ClickHouse target of a built dashboard."""
    found = []
    for panel in board.panels or []:
        for target in getattr(panel, "targets", None) or []:
            if isinstance(target, ClickHouseQuery):
                found.append((panel.title or "", target.raw_sql))
    return found
