"""The sink's two insert formats land the same rows: Arrow (plain fetches) and JSONEachRow
(everything else) through the real chDB gateway, and a sink run takes the Arrow path."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kibamail.contracts import (
    BounceClass,
    CorrelatedMessageEvent,
    MessageStatus,
    Topic,
    TrafficKind,
    serialize,
)
from kibamail.settings import Settings
from pipelines.sinks.arrow_rows import describe
from pipelines.sinks.clickhouse import ClickHouseSink
from pipelines.sinks.inserts import Inserter
from pipelines.sinks.rows import Batch
from pipelines.tests.test_sink_integration import drain, start_group_at

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def varied_events(team: str) -> list[bytes]:
    """Rows exercising every column type: sub-millisecond times, escapes, edge integers."""
    return [
        serialize(
            CorrelatedMessageEvent(
                event_id=f"{team}-e{i}",
                team_id=team,
                message_id=f"m{i}",
                status=list(MessageStatus)[i % len(MessageStatus)],
                occurred_at=T0 + timedelta(microseconds=999_999 * i + 1),
                recipient=f"ü{i}@example.org",
                kind=TrafficKind.MARKETING if i % 2 else TrafficKind.TRANSACTIONAL,
                attempt=65535 if i == 3 else i,
                smtp_code=0 if i == 4 else 550,
                smtp_response='550 5.1.1 "no such user"\n\ttab \\ back \u2028 é',
                bounce_class=BounceClass.HARD if i % 3 else BounceClass.NONE,
                transcript="x" * (i * 100),
                broadcast_id=f"b{i % 2}",
                tags=[f"t{j}" for j in range(i % 4)],
            )
        )
        for i in range(12)
    ]


def stored(client: Any, db: str, team: str) -> list[tuple[Any, ...]]:
    """Every column the table shares with the event (but the team), ordered by message."""
    table = describe(client, db, "raw_message_events")
    columns = [n for n in CorrelatedMessageEvent.model_fields if n in table and n != "team_id"]
    return [
        tuple(row)
        for row in client.query(
            f"SELECT {', '.join(columns)} FROM {db}.raw_message_events FINAL "
            "WHERE team_id = {t:String} ORDER BY message_id",
            parameters={"t": team},
        ).result_rows
    ]


def insert(settings: Settings, client: Any, rows: list[bytes], as_arrow: bool) -> Inserter:
    inserter = Inserter(lambda: client, settings.clickhouse.database, 1.0, _no_dead_letters)
    batch = Batch()
    table = None
    if as_arrow:
        shape = inserter.arrow_shape(Topic.CLICKHOUSE_MESSAGES, may_ask=True)
        assert shape is not None
        table = shape.parse(rows)
        assert table is not None
    batch.add_run(Topic.CLICKHOUSE_MESSAGES, 0, 0, len(rows) - 1, rows, table)
    assert batch.arrow_tables(Topic.CLICKHOUSE_MESSAGES) == (None if table is None else [table])
    assert inserter.insert_batch(batch)
    return inserter


def _no_dead_letters(*args: Any) -> None:
    raise AssertionError(f"unexpected dead letter {args}")


def test_arrow_and_json_inserts_store_identical_rows(
    test_settings: Settings, warehouse_client: Any
) -> None:
    db = test_settings.clickhouse.database
    arrow_team, json_team = f"a-{uuid.uuid4().hex[:8]}", f"j-{uuid.uuid4().hex[:8]}"
    insert(test_settings, warehouse_client, varied_events(arrow_team), as_arrow=True)
    insert(test_settings, warehouse_client, varied_events(json_team), as_arrow=False)
    via_arrow, via_json = (
        stored(warehouse_client, db, arrow_team),
        stored(warehouse_client, db, json_team),
    )
    assert len(via_arrow) == 12
    strip = lambda rows, team: [(row[0].removeprefix(team), *row[1:]) for row in rows]  # noqa: E731
    assert strip(via_arrow, arrow_team) == strip(via_json, json_team)
    # DateTime64(3): both formats keep the milliseconds and drop the rest.
    [second] = [row for row in via_arrow if row[3] == "m2"]  # event_id, version, time, message
    assert second[2] == (T0 + timedelta(microseconds=999_999 * 2 + 1)).replace(
        microsecond=999_000, tzinfo=None
    )


class RecordingClient:
    """The real client, noting the format of every insert."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.formats: list[Any] = []

    def query(self, *args: Any, **kwargs: Any) -> Any:
        return self.client.query(*args, **kwargs)

    def raw_insert(self, *args: Any, **kwargs: Any) -> Any:
        self.formats.append(kwargs["fmt"])
        return self.client.raw_insert(*args, **kwargs)


def test_sink_inserts_plain_fetches_as_arrow_and_commits_after(
    test_settings: Settings, produce: Any, warehouse_client: Any
) -> None:
    team, group = f"s-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    rows = varied_events(team) * 2  # every event twice: still one row each
    end = produce(Topic.CLICKHOUSE_MESSAGES.value, rows)
    start_group_at(test_settings, group, Topic.CLICKHOUSE_MESSAGES, end - len(rows))
    recording = RecordingClient(warehouse_client)
    sink = ClickHouseSink(
        test_settings,
        topics=[Topic.CLICKHOUSE_MESSAGES],  # the other topics hold earlier tests' rows
        client_factory=lambda: recording,
        group_id=group,
        flush_seconds=0.1,
    )
    try:
        drain(sink, test_settings, group, Topic.CLICKHOUSE_MESSAGES, end)
    finally:
        sink.close()
    assert set(recording.formats) == {"ArrowStream"}
    db = test_settings.clickhouse.database
    assert len(stored(warehouse_client, db, team)) == 12
