"""The deliverability dashboard shows bounces by reason and provider (fct_bounces_daily)."""

from __future__ import annotations

import pytest

from dashboards.boards import DASHBOARDS
from dashboards.clickhouse import panel_queries

pytestmark = pytest.mark.unit


def test_bounces_by_reason_and_provider_panel() -> None:
    queries = dict(panel_queries(DASHBOARDS["deliverability-by-provider"]().build()))
    query = queries["Bounces by reason and provider"]
    assert "FROM fct_bounces_daily" in query
    for column in ("reason", "action", "provider", "suppressed"):
        assert column in query
