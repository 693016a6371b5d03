"""The sink talks to ClickHouse (connection, Arrow shapes) while its consumer joins the
group, before the first fetch; ClickHouse down then only means JSON rows for a while."""

from __future__ import annotations

from typing import Any

import pytest

from kibamail.contracts import Topic
from kibamail.settings import Settings
from pipelines.sinks.clickhouse import ClickHouseSink
from pipelines.tests.test_sink_pipelining_unit import FakeConsumer, FakeProducer

pytestmark = pytest.mark.unit


class Result:
    def __init__(self, rows: list[tuple[str, str]]) -> None:
        self.result_rows = rows


class DescribingClient:
    """Answers the column query like ClickHouse for the messages table; records queries."""

    def __init__(self, down: bool = False) -> None:
        self.down = down
        self.queries: list[str] = []

    def query(self, sql: str, parameters: dict[str, str] | None = None) -> Result:
        self.queries.append(sql)
        if self.down:
            raise ConnectionRefusedError("clickhouse down")
        return Result([("event_version", "UInt16"), ("team_id", "String")])


def make_sink(monkeypatch: pytest.MonkeyPatch, client: DescribingClient) -> ClickHouseSink:
    import confluent_kafka

    monkeypatch.setattr(confluent_kafka, "Consumer", FakeConsumer)
    monkeypatch.setattr(confluent_kafka, "Producer", FakeProducer)
    return ClickHouseSink(
        Settings(), topics=[Topic.CLICKHOUSE_MESSAGES], client_factory=lambda: client
    )


def test_prepare_asks_clickhouse_before_the_first_fetch(monkeypatch: pytest.MonkeyPatch) -> None:
    client = DescribingClient()
    sink = make_sink(monkeypatch, client)
    consumer: Any = sink._consumer
    try:
        sink.prepare()
        assert len(client.queries) == 1 and "system.columns" in client.queries[0]
        assert consumer.next_offset == 0  # nothing fetched yet
        sink.prepare()  # asked once: the shape is kept
        assert len(client.queries) == 1
    finally:
        sink.close()


def test_prepare_with_clickhouse_down_neither_raises_nor_blocks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = DescribingClient(down=True)
    sink = make_sink(monkeypatch, client)
    try:
        sink.prepare()
        assert len(client.queries) == 1
        # Rows still flow (as JSON) and the shape is asked again only after a pause.
        assert sink.poll_once(0.01) == 1
        assert len(client.queries) == 1
    finally:
        sink.close()
