"""Every dashboard renders, is committed as rendered, and has sane panels."""

from __future__ import annotations

import json

import pytest

from dashboards.boards import DASHBOARDS
from dashboards.clickhouse import DATASOURCE_UID, PLUGIN_ID, panel_queries
from dashboards.render import rendered_files

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_renders_with_titled_panels_and_queries(name: str) -> None:
    board = DASHBOARDS[name]().build()
    assert board.uid and board.uid.startswith("kibamail-")
    titles = [panel.title for panel in board.panels]
    assert titles and len(titles) == len(set(titles)), titles
    for panel in board.panels:
        assert panel.targets, f"{name}: panel {panel.title!r} has no query"


def test_clickhouse_targets_use_the_provisioned_datasource() -> None:
    board = json.loads(
        rendered_files()[next(p for p in rendered_files() if p.name == "reputation.json")]
    )
    targets = [t for panel in board["panels"] for t in panel["targets"]]
    assert targets and all(
        t["datasource"] == {"type": PLUGIN_ID, "uid": DATASOURCE_UID} for t in targets
    )
    assert all(t["editorType"] == "sql" and t["rawSql"].startswith("SELECT") for t in targets)


def test_every_dashboard_has_clickhouse_or_prometheus_queries() -> None:
    assert sum(len(panel_queries(f().build())) for f in DASHBOARDS.values()) >= 15


def test_committed_files_match_the_code() -> None:
    stale = [
        str(path)
        for path, text in rendered_files().items()
        if not path.exists() or path.read_text() != text
    ]
    assert not stale, f"run `python -m dashboards.render`: {stale}"


def test_geomap_looks_up_countries() -> None:
    board = DASHBOARDS["engagement-by-country"]().build()
    geomap = next(panel for panel in board.panels if panel.type_val == "geomap")
    layer = geomap.options.layers[0]
    assert layer.location.mode == "lookup" and layer.location.lookup == "country"


def test_dmarc_dashboard_covers_pass_rate_sources_alignment_and_disposition() -> None:
    board = DASHBOARDS["dmarc"]().build()
    queries = dict(panel_queries(board))
    assert {
        "DMARC pass rate per domain",
        "Volume by sending source",
        "Volume by source network (ASN)",
        "Reported volume by source country",
        "SPF and DKIM alignment",
        "Disposition applied by receivers",
        "Top failing sources",
    } <= set(queries)
    assert all("fct_dmarc_daily" in sql for sql in queries.values())
    assert "ORDER BY failed DESC" in queries["Top failing sources"]
