"""DMARC test fixtures shared by the modules that write the shared warehouse."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kibamail.contracts import ClickHouseTable

DMARC_TABLES = (
    ClickHouseTable.DMARC_REPORTS,
    ClickHouseTable.DMARC_RECORDS,
    ClickHouseTable.DMARC_FAILURE_REPORTS,
    ClickHouseTable.TLS_REPORTS,
)


def _truncate(clickhouse: Any) -> None:
    for table in DMARC_TABLES:
        clickhouse.command(f"TRUNCATE TABLE IF EXISTS {table.value}")


@pytest.fixture
def dmarc_tables(clickhouse: Any) -> Iterator[Any]:
    """The shared warehouse's DMARC tables, empty before and after the test: a report's
    key is per team, so rows left behind would make another module's ingest of the same
    fixture for the same team (or for none) a duplicate."""
    _truncate(clickhouse)
    yield clickhouse
    _truncate(clickhouse)
