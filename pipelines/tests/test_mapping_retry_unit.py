"""Late mappings: the retry schedule, its per-lookup-count queues, what a resumed snapshot
does, and that late rows leave the correlation flow as chunks, not one item each."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest
from bytewax.operators import StatefulBatchLogic
from bytewax.testing import TestingSink, TestingSource, run_main

from kibamail.contracts import CorrelatedMessageEvent, MessageMapping, MessageStatus, Topic
from kibamail.contracts import serialize as to_json
from kibamail.settings import PipelineSettings, PipelineTuning, Settings
from pipelines.correlation import build_flow
from pipelines.kafka_io import OutChunk, chunk_messages
from pipelines.mapping import MappingRetryLogic, Pending
from pipelines.tests.fakes import FakeRedis, source_message, status_event

pytestmark = pytest.mark.unit

TOPIC = Topic.MESSAGE_STATUSES.value


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Resolver:
    """Finds the ids in ``found``; records every lookup (one list per call)."""

    def __init__(self) -> None:
        self.found: set[str] = set()
        self.lookups: list[list[str]] = []
        self.lookup: Any = None

    def resolve_pending(self, pending: list[Pending]) -> tuple[list[Any], list[int]]:
        self.lookups.append([p.message_id for p in pending])
        out = [("row", p.message_id) for p in pending if p.message_id in self.found]
        return out, [i for i, p in enumerate(pending) if p.message_id not in self.found]

    def give_up(self, pending: Pending, waited_seconds: float) -> Any:
        return ("dead", pending.message_id, pending.attempts, waited_seconds)


def parked(message_id: str, attempts: int = 0, due: float = 0.0) -> Pending:
    return Pending("0", TOPIC, None, b"{}", message_id, attempts, due)


def test_lookups_follow_the_schedule_then_give_up_with_the_total() -> None:
    clock, resolver = Clock(), Resolver()
    logic: MappingRetryLogic[Any] = MappingRetryLogic(resolver, [0.25, 0.5, 1.0], None, clock)
    logic.on_batch([parked("a")])
    lookup_times: list[float] = []
    outputs: list[Any] = []
    for _ in range(400):  # 12.5 s in steps of 1/32 s (exact in binary)
        clock.now += 1 / 32
        out, _keep = logic.on_notify()
        if len(resolver.lookups) > len(lookup_times):
            lookup_times.append(round(clock.now - 1000.0, 3))
        outputs += out
    assert lookup_times == [0.25, 0.75, 1.75]
    assert outputs == [("dead", "a", 3, 1.75)]
    assert logic.notify_at() is None and logic.snapshot() == ()


def test_a_notify_takes_only_the_due_heads_and_finds_late_mappings() -> None:
    clock, resolver = Clock(), Resolver()
    logic: MappingRetryLogic[Any] = MappingRetryLogic(resolver, [0.25, 0.25, 0.5], None, clock)
    logic.on_batch([parked(f"early{i}") for i in range(3)])
    clock.now += 0.1
    logic.on_batch([parked(f"later{i}") for i in range(3)])
    clock.now += 0.2  # the first three are due, the next three not yet
    resolver.found = {"early1", "later2"}
    out, keep = logic.on_notify()
    assert resolver.lookups == [["early0", "early1", "early2"]]
    assert out == [("row", "early1")] and keep == StatefulBatchLogic.RETAIN
    out, _ = logic.on_notify()  # nothing new is due: no lookup at all
    assert out == [] and len(resolver.lookups) == 1
    clock.now += 0.1
    out, _ = logic.on_notify()
    assert resolver.lookups[-1] == ["later0", "later1", "later2"]
    assert out == [("row", "later2")]
    assert sorted((p.message_id, p.attempts) for p in logic.snapshot()) == [
        ("early0", 2),
        ("early2", 2),
        ("later0", 2),
        ("later1", 2),
    ]


def test_a_resumed_snapshot_keeps_its_items_and_waits_no_longer_than_the_schedule() -> None:
    clock, resolver = Clock(), Resolver()
    # Parked by an older, longer schedule: due in 30 s, and one past the new schedule's end.
    state = (parked("slow", attempts=2, due=clock.now + 30.0), parked("old", 7, clock.now + 5))
    logic: MappingRetryLogic[Any] = MappingRetryLogic(resolver, [0.25, 0.5], state, clock)
    assert {p.message_id for p in logic.snapshot()} == {"slow", "old"}
    clock.now += 0.5  # within the current schedule's 0.5 s for a second lookup
    out, keep = logic.on_notify()
    assert sorted(resolver.lookups[0]) == ["old", "slow"]
    assert sorted(out) == [("dead", "old", 7, 0.75), ("dead", "slow", 2, 0.75)]
    assert keep == StatefulBatchLogic.DISCARD


# Long enough for the retries even when this is the first flow of a loaded test process
# (its first activation can take several tenths of a second).
PAUSE = TestingSource.PAUSE(timedelta(seconds=1.5))


def run_chunks(inputs: list[object], redis: FakeRedis) -> list[Any]:
    out: list[Any] = []
    tuning = PipelineTuning(mapping_retry_delays_seconds=[0.05, 0.05, 0.05], retry_shards=4)
    flow = build_flow(
        Settings(pipelines=PipelineSettings(tuning=tuning)),
        source=TestingSource(inputs, batch_size=500),
        sink=TestingSink(out),
        redis_factory=lambda: redis,
    )
    run_main(flow)
    return out


def test_late_rows_leave_as_chunks_equal_to_the_contract_serialization() -> None:
    redis = FakeRedis()
    events = [status_event(f"m{i}", MessageStatus.DELIVERED) for i in range(200)]
    for i in range(200):
        mapping = MessageMapping(team_id="team-1", contact_id=f"c{i}")
        if i % 10 == 9:  # late: shows up after the inline lookup
            redis.map_later(f"m{i}", mapping, after_calls=1)
        else:
            redis.map(f"m{i}", mapping)
    inputs: list[object] = [source_message(TOPIC, to_json(e), i) for i, e in enumerate(events)]
    chunks = run_chunks([*inputs, PAUSE], redis)
    assert all(isinstance(chunk, OutChunk) for chunk in chunks)
    # The inline batch, then at most one chunk per retry shard (not 20 single items).
    assert 2 <= len(chunks) <= 1 + 4
    rows = [m for chunk in chunks for m in chunk_messages(chunk)]
    late = {f"m{i}" for i in range(200) if i % 10 == 9}
    expected = {
        event.message_id: to_json(CorrelatedMessageEvent(**event.model_dump(), contact_id=f"c{i}"))
        for i, event in enumerate(events)
    }
    assert sorted(m.key or b"" for m in rows) == sorted(e.encode() for e in expected)
    assert all(m.value == expected[(m.key or b"").decode()] for m in rows)
    assert {(m.key or b"").decode() for chunk in chunks[1:] for m in chunk_messages(chunk)} == late


def test_a_late_mapping_of_another_team_is_refused_on_the_retry_path() -> None:
    redis = FakeRedis()
    redis.map("mine", MessageMapping(team_id="team-1", contact_id="c1"))
    # Another team's intake writes a mapping for this message id only after the status:
    # it lands under the attacker's own key, which team-1's status never reads.
    redis.map_later("victim", MessageMapping(team_id="attacker", contact_id="x"), after_calls=1)
    # A late mapping found under team-1's key that names another team (a corrupted store).
    redis.map_later(
        "forged", MessageMapping(team_id="attacker", contact_id="y"), 1, under_team="team-1"
    )
    inputs: list[object] = [
        source_message(TOPIC, to_json(status_event("mine", MessageStatus.DELIVERED)), 0),
        source_message(TOPIC, to_json(status_event("victim", MessageStatus.DELIVERED)), 1),
        source_message(TOPIC, to_json(status_event("forged", MessageStatus.DELIVERED)), 2),
        PAUSE,
    ]
    messages = [m for chunk in run_chunks(inputs, redis) for m in chunk_messages(chunk)]
    rows = [orjson.loads(m.value) for m in messages if m.topic == Topic.CLICKHOUSE_MESSAGES.value]
    letters = [orjson.loads(m.value) for m in messages if m.topic == Topic.DEAD_LETTER.value]
    assert [(r["message_id"], r["team_id"]) for r in rows] == [("mine", "team-1")]
    reasons = sorted(letter["reason"] for letter in letters)
    assert len(reasons) == 2
    assert reasons[0].startswith("mapping missing") and "'victim'" in reasons[0]
    assert reasons[1].startswith("team mismatch") and "'attacker'" in reasons[1]
