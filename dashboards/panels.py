"""Panel helpers so each dashboard reads as a list of questions and their SQL."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common, dashboard, geomap, stat, table, timeseries
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.models import common as common_models

from dashboards.clickhouse import CLICKHOUSE, PROMETHEUS, Format, sql


def new_dashboard(uid: str, title: str, description: str) -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["kibamail"])
        .timezone("utc")
        .time("now-30d", "now")
        .refresh("5m")
    )


def series(title: str, query: str, unit: str = "short", width: int = 12) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .datasource(CLICKHOUSE)
        .with_target(sql(query, Format.TIME_SERIES))
        .unit(unit)
        .span(width)
        .height(8)
        .fill_opacity(10)
    )


def number(title: str, query: str, unit: str = "short", width: int = 6) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .datasource(CLICKHOUSE)
        .with_target(sql(query))
        .unit(unit)
        .span(width)
        .height(4)
    )


def rows(title: str, query: str, width: int = 24, height: int = 10) -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .datasource(CLICKHOUSE)
        .with_target(sql(query))
        .span(width)
        .height(height)
    )


def country_map(title: str, query: str, value_field: str) -> geomap.Panel:
    """Markers looked up by ISO country code (Grafana's bundled countries gazetteer)."""
    layer = (
        common.MapLayerOptions()
        .type("markers")
        .name(value_field)
        .location(
            common.FrameGeometrySource()
            .mode(common_models.FrameGeometrySourceMode.LOOKUP)
            .lookup("country")
            .gazetteer("public/gazetteer/countries.json")
        )
        .config(
            {"showLegend": True, "style": {"size": {"field": value_field, "min": 4, "max": 30}}}
        )
        .tooltip(True)
    )
    return (
        geomap.Panel()
        .title(title)
        .datasource(CLICKHOUSE)
        .with_target(sql(query))
        .view(geomap.MapViewConfig().id("zero").lat(20).lon(0).zoom(1))
        .layers([layer])
        .span(24)
        .height(12)
    )


def prometheus_series(title: str, expr: str, legend: str, unit: str = "short") -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .datasource(PROMETHEUS)
        .with_target(prom.Dataquery().expr(expr).legend_format(legend).ref_id("A"))
        .unit(unit)
        .span(12)
        .height(8)
    )
