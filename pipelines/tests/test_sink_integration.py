"""The ClickHouse sink against the real broker: batching, idempotence, bad rows, outages."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from kibamail.clients import kafka_consumer_config
from kibamail.contracts import (
    CorrelatedMessageEvent,
    EnrichedOpenEvent,
    MessageStatus,
    Topic,
    serialize,
)
from kibamail.settings import Settings
from pipelines.sinks.clickhouse import ClickHouseSink

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def events(team: str, n: int, status: MessageStatus = MessageStatus.DELIVERED) -> list[bytes]:
    return [
        serialize(
            CorrelatedMessageEvent(
                team_id=team,
                message_id=f"{team}-m{i}",
                status=status,
                occurred_at=T0 + timedelta(milliseconds=i),
                contact_id=f"c{i}",
                tags=["receipt"],
            )
        )
        for i in range(n)
    ]


def rows_for(client: Any, db: str, table: str, team: str) -> int:
    return int(
        client.query(
            f"SELECT count() FROM {db}.{table} FINAL WHERE team_id = {{t:String}}",
            parameters={"t": team},
        ).result_rows[0][0]
    )


def committed(settings: Settings, group: str, topic: Topic) -> int:
    """The group's committed offset of partition 0 (negative when none)."""
    probe = Consumer(kafka_consumer_config(group, settings))
    try:
        [tp] = probe.committed([TopicPartition(topic.value, 0)], timeout=10)
        return int(tp.offset)
    finally:
        probe.close()


def start_group_at(settings: Settings, group: str, topic: Topic, offset: int) -> int:
    """Start a new group where this test's events begin: the topic is shared with the
    session's other tests (a million-event fault run among them), which are not ours."""
    consumer = Consumer(kafka_consumer_config(group, settings))
    try:
        consumer.commit(offsets=[TopicPartition(topic.value, 0, offset)], asynchronous=False)
    finally:
        consumer.close()
    return offset


def drain(sink: ClickHouseSink, settings: Settings, group: str, topic: Topic, end: int) -> None:
    """Poll until the group's committed offset reaches the end offset of what we produced."""
    for _ in range(1200):
        sink.poll_once(0.05)
        if sink.inserts and not sink._batch.offsets and committed(settings, group, topic) >= end:
            return
    raise AssertionError("sink did not catch up")


def make_sink(settings: Settings, client: Any, group: str, **kw: Any) -> ClickHouseSink:
    return ClickHouseSink(settings, client_factory=lambda: client, group_id=group, **kw)


def test_batches_are_inserted_once_and_offsets_committed_after(
    test_settings: Settings, produce: Any, warehouse_client: Any
) -> None:
    team, group = f"t-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    payloads = events(team, 3000)
    end = produce(Topic.CLICKHOUSE_MESSAGES.value, payloads + payloads[:500])  # 500 duplicates
    start_group_at(test_settings, group, Topic.CLICKHOUSE_MESSAGES, end - 3500)
    sink = make_sink(test_settings, warehouse_client, group, batch_rows=1000, flush_seconds=0.2)
    try:
        drain(sink, test_settings, group, Topic.CLICKHOUSE_MESSAGES, end)
    finally:
        sink.close()
    db = test_settings.clickhouse.database
    assert rows_for(warehouse_client, db, "raw_message_events", team) == 3000
    row = warehouse_client.query(
        f"SELECT status, contact_id, tags, occurred_at FROM {db}.raw_message_events FINAL "
        "WHERE team_id = {t:String} AND message_id = {m:String}",
        parameters={"t": team, "m": f"{team}-m7"},
    ).result_rows
    assert row == [
        ("delivered", "c7", ["receipt"], (T0 + timedelta(milliseconds=7)).replace(tzinfo=None))
    ]
    assert sink.inserts >= 3  # flushed by size, not one giant insert


def test_replay_after_crash_before_commit_gives_same_rows(
    test_settings: Settings, produce: Any, warehouse_client: Any
) -> None:
    team, group = f"t-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    end = produce(Topic.CLICKHOUSE_MESSAGES.value, events(team, 800))
    start = start_group_at(test_settings, group, Topic.CLICKHOUSE_MESSAGES, end - 800)
    crashing = make_sink(test_settings, warehouse_client, group, batch_rows=100_000)
    crashing._commit = _crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="crash"):
        for _ in range(200):
            crashing.poll_once(0.05)
    crashing._consumer.close()
    db = test_settings.clickhouse.database
    assert rows_for(warehouse_client, db, "raw_message_events", team) == 800
    assert committed(test_settings, group, Topic.CLICKHOUSE_MESSAGES) == start  # none committed

    again = make_sink(test_settings, warehouse_client, group)
    try:
        drain(again, test_settings, group, Topic.CLICKHOUSE_MESSAGES, end)
    finally:
        again.close()
    assert rows_for(warehouse_client, db, "raw_message_events", team) == 800


def _crash(*_a: Any, **_k: Any) -> None:
    raise RuntimeError("crash before commit")


class FlakyClient:
    """Passes through to ClickHouse, except while `down` (connection refused)."""

    def __init__(self, client: Any, failures: int) -> None:
        self.client, self.failures, self.calls = client, failures, 0

    def raw_insert(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionRefusedError("[Errno 111] Connection refused")
        return self.client.raw_insert(*args, **kwargs)


def test_clickhouse_outage_pauses_then_resumes_without_loss(
    test_settings: Settings, produce: Any, warehouse_client: Any
) -> None:
    team, group = f"t-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    end = produce(Topic.CLICKHOUSE_MESSAGES.value, events(team, 500))
    start_group_at(test_settings, group, Topic.CLICKHOUSE_MESSAGES, end - 500)
    flaky = FlakyClient(warehouse_client, failures=4)
    sink = ClickHouseSink(
        test_settings, client_factory=lambda: flaky, group_id=group, batch_rows=200
    )
    try:
        drain(sink, test_settings, group, Topic.CLICKHOUSE_MESSAGES, end)
    finally:
        sink.close()
    assert flaky.calls >= 5
    db = test_settings.clickhouse.database
    assert rows_for(warehouse_client, db, "raw_message_events", team) == 500


def test_bad_rows_are_dead_lettered_and_good_rows_land(
    test_settings: Settings, produce: Any, warehouse_client: Any
) -> None:
    team, group = f"t-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    good = [
        serialize(EnrichedOpenEvent(team_id=team, message_id=f"m{i}", country="DE"))
        for i in range(20)
    ]
    marker = uuid.uuid4().hex
    bad = [
        f'{{"oops": "{marker}"'.encode(),
        orjson.dumps({"team_id": team, "message_id": "m", "event_version": 9, "m": marker}),
    ]
    end = produce(Topic.CLICKHOUSE_EMAIL_OPENS.value, good[:10] + bad + good[10:])
    start_group_at(test_settings, group, Topic.CLICKHOUSE_EMAIL_OPENS, end - 22)
    sink = make_sink(test_settings, warehouse_client, group, flush_seconds=0.1)
    try:
        drain(sink, test_settings, group, Topic.CLICKHOUSE_EMAIL_OPENS, end)
    finally:
        sink.close()
    db = test_settings.clickhouse.database
    assert rows_for(warehouse_client, db, "raw_email_opens", team) == 20
    letters = read_dead_letters(test_settings, marker)
    assert sorted(letter["reason"].split(":")[0] for letter in letters) == [
        "malformed JSON",
        "unsupported event_version 9",
    ]
    assert {letter["source_topic"] for letter in letters} == {Topic.CLICKHOUSE_EMAIL_OPENS.value}


def read_dead_letters(settings: Settings, marker: str) -> list[dict[str, Any]]:
    consumer = Consumer(kafka_consumer_config(f"dl-{uuid.uuid4().hex[:8]}", settings))
    consumer.assign([TopicPartition(Topic.DEAD_LETTER.value, 0, 0)])
    found: list[dict[str, Any]] = []
    try:
        idle = 0
        while idle < 3:  # read to the end: three empty polls in a row
            batch = consumer.consume(1000, 0.5)
            idle = 0 if batch else idle + 1
            for msg in batch:
                letter = orjson.loads(msg.value() or b"")
                if marker in letter["payload"]:
                    found.append(letter)
    finally:
        consumer.close()
    return found


def test_row_clickhouse_refuses_is_bisected_out(
    test_settings: Settings, produce: Any, warehouse_client: Any
) -> None:
    team, group = f"t-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    payloads = events(team, 40)
    poisoned = orjson.loads(payloads[17])
    poisoned["smtp_code"] = "not a number"
    poisoned["message_id"] = marker = f"poison-{uuid.uuid4().hex}"
    payloads[17] = orjson.dumps(poisoned)
    end = produce(Topic.CLICKHOUSE_MESSAGES.value, payloads)
    start_group_at(test_settings, group, Topic.CLICKHOUSE_MESSAGES, end - len(payloads))
    sink = make_sink(test_settings, warehouse_client, group, flush_seconds=0.1)
    try:
        drain(sink, test_settings, group, Topic.CLICKHOUSE_MESSAGES, end)
    finally:
        sink.close()
    db = test_settings.clickhouse.database
    assert rows_for(warehouse_client, db, "raw_message_events", team) == 39
    [letter] = read_dead_letters(test_settings, marker)
    assert letter["reason"].startswith("clickhouse refused row")
