"""Sinks that assign their own partitions (no group join) against the real broker: two
sinks split the partitions and write every row once, offsets go to the group from a
consumer that never joined it, a restarted sink resumes there, bad rows dead-letter."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from kibamail.contracts import EnrichedOpenEvent, Topic, serialize
from kibamail.settings import Settings
from pipelines.sinks.clickhouse import ClickHouseSink
from pipelines.tests.test_sink_integration import (
    committed,
    events,
    read_dead_letters,
    rows_for,
    start_group_at,
)

pytestmark = pytest.mark.integration

MESSAGES, OPENS = Topic.CLICKHOUSE_MESSAGES, Topic.CLICKHOUSE_EMAIL_OPENS


def sink_at(
    settings: Settings, client: Any, group: str, topics: list[Topic], index: int, count: int
) -> ClickHouseSink:
    return ClickHouseSink(
        settings,
        topics=topics,
        client_factory=lambda: client,
        group_id=group,
        flush_seconds=0.1,
        member=(index, count),
    )


def drain_all(
    sinks: list[ClickHouseSink], settings: Settings, group: str, ends: dict[Topic, int]
) -> list[int]:
    """Poll every sink until the group's offsets reach ``ends``; rows each sink read."""
    read = [0] * len(sinks)
    for _ in range(1200):
        for i, sink in enumerate(sinks):
            read[i] += sink.poll_once(0.05)
        idle = all(not s._batch.offsets and s._inflight is None for s in sinks)
        if idle and all(committed(settings, group, t) >= end for t, end in ends.items()):
            return read
    raise AssertionError("sinks did not catch up")


def test_two_sinks_split_the_partitions_and_write_every_row_once(
    test_settings: Settings, produce: Any, warehouse_client: Any
) -> None:
    team, group = f"t-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    opens = [
        serialize(EnrichedOpenEvent(team_id=team, message_id=f"m{i}", country="DE"))
        for i in range(300)
    ]
    marker = uuid.uuid4().hex  # attacker: a malformed row among them
    bad = f'{{"team_id": "{team}", "oops": "{marker}"'.encode()
    ends = {
        MESSAGES: produce(MESSAGES.value, events(team, 700)),
        OPENS: produce(OPENS.value, [*opens[:150], bad, *opens[150:]]),
    }
    start_group_at(test_settings, group, MESSAGES, ends[MESSAGES] - 700)
    start_group_at(test_settings, group, OPENS, ends[OPENS] - 301)
    sinks = [
        sink_at(test_settings, warehouse_client, group, [MESSAGES, OPENS], i, 2) for i in (0, 1)
    ]
    try:
        shares = [s._assigner.assigned if s._assigner else set() for s in sinks]
        assert shares[0] and shares[1] and not shares[0] & shares[1]
        assert shares[0] | shares[1] == {(MESSAGES.value, 0), (OPENS.value, 0)}
        read = drain_all(sinks, test_settings, group, ends)
    finally:
        for sink in sinks:
            sink.close()
    # each sink read only its own partition, each message once (the bad one too)
    mine = {(MESSAGES.value, 0): 700, (OPENS.value, 0): 301}
    assert read == [sum(mine[where] for where in share) for share in shares]
    db = test_settings.clickhouse.database
    assert rows_for(warehouse_client, db, "raw_message_events", team) == 700
    assert rows_for(warehouse_client, db, "raw_email_opens", team) == 300
    [letter] = read_dead_letters(test_settings, marker)
    assert letter["reason"].startswith("malformed JSON")
    assert letter["source_topic"] == OPENS.value


def test_a_restarted_sink_resumes_from_the_committed_offsets(
    test_settings: Settings, produce: Any, warehouse_client: Any
) -> None:
    team, group = f"t-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    first = produce(MESSAGES.value, events(team, 400)[:250])
    start = start_group_at(test_settings, group, MESSAGES, first - 250)
    sink = sink_at(test_settings, warehouse_client, group, [MESSAGES], 0, 1)
    try:
        assert drain_all([sink], test_settings, group, {MESSAGES: first}) == [250]
    finally:
        sink.close()
    assert committed(test_settings, group, MESSAGES) == start + 250

    end = produce(MESSAGES.value, events(team, 400)[250:])
    again = sink_at(test_settings, warehouse_client, group, [MESSAGES], 0, 1)
    try:
        # read from the committed offset on: none of the first 250 again
        assert drain_all([again], test_settings, group, {MESSAGES: end}) == [150]
    finally:
        again.close()
    db = test_settings.clickhouse.database
    assert rows_for(warehouse_client, db, "raw_message_events", team) == 400
    assert committed(test_settings, group, MESSAGES) == end


def test_a_sink_of_another_place_touches_nothing(
    test_settings: Settings, produce: Any, warehouse_client: Any
) -> None:
    """A sink whose share holds none of the topic's partitions reads and commits nothing."""
    team, group = f"t-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    end = produce(MESSAGES.value, [orjson.dumps({"team_id": team}), *events(team, 20)])
    start = start_group_at(test_settings, group, MESSAGES, end - 21)
    idle = sink_at(test_settings, warehouse_client, group, [MESSAGES], 1, 2)
    try:
        assert idle._assigner is not None and idle._assigner.assigned == set()
        assert sum(idle.poll_once(0.05) for _ in range(20)) == 0
    finally:
        idle.close()
    assert committed(test_settings, group, MESSAGES) == start
    db = test_settings.clickhouse.database
    assert rows_for(warehouse_client, db, "raw_message_events", team) == 0
