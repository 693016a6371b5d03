from __future__ import annotations

from datetime import timedelta

import orjson
import pytest
from bytewax.testing import TestingSink, TestingSource, run_main

from kibamail.contracts import (
    CorrelatedMessageEvent,
    MessageMapping,
    MessageStatus,
    Topic,
    deserialize,
    serialize,
)
from kibamail.redis_keys import RedisKeys
from kibamail.settings import PipelineSettings, PipelineTuning, Settings
from pipelines.correlation import build_flow
from pipelines.kafka_io import chunk_messages
from pipelines.tests.fakes import FakeRedis, source_message, status_event

pytestmark = pytest.mark.unit

TOPIC = Topic.MESSAGE_STATUSES.value


def run(inputs: list[object], redis: FakeRedis, delays: list[float] | None = None) -> list:
    out: list = []
    tuning = PipelineTuning(mapping_retry_delays_seconds=delays or [0.05, 0.05], retry_shards=4)
    flow = build_flow(
        Settings(pipelines=PipelineSettings(tuning=tuning)),
        source=TestingSource(inputs, batch_size=500),
        sink=TestingSink(out),
        redis_factory=lambda: redis,
    )
    run_main(flow)
    # The flow emits chunks of messages (a few per input batch): flatten them.
    return [message for chunk in out for message in chunk_messages(chunk)]


def by_topic(out: list, topic: Topic) -> list[dict]:
    return [orjson.loads(m.value) for m in out if m.topic == topic.value]


def test_joins_mapping_and_batches_lookups() -> None:
    redis = FakeRedis()
    events = [status_event(f"m{i}", MessageStatus.DELIVERED) for i in range(1000)]
    for i in range(1000):
        redis.map(f"m{i}", MessageMapping(team_id="team-1", broadcast_id="b1", contact_id=f"c{i}"))
    out = run([source_message(TOPIC, serialize(e), i) for i, e in enumerate(events)], redis)
    rows = by_topic(out, Topic.CLICKHOUSE_MESSAGES)
    assert len(rows) == 1000
    # Two batches of 500 -> two MGETs, never a round trip per event.
    assert redis.mget_calls == [500, 500]
    first = deserialize(CorrelatedMessageEvent, orjson.dumps(rows[0]))
    assert first.event_id == events[0].event_id
    assert (first.broadcast_id, first.contact_id, first.status) == ("b1", "c0", "delivered")
    assert first.occurred_at == events[0].occurred_at


def test_output_equals_contract_serialization() -> None:
    redis = FakeRedis()
    mapping = MessageMapping(team_id="team-1", broadcast_id="b", variant_id="v", tags=["x"])
    redis.map("m1", mapping)
    event = status_event("m1", MessageStatus.BOUNCED, bounce_class="hard", smtp_code=550)
    out = run([source_message(TOPIC, serialize(event))], redis)
    expected = CorrelatedMessageEvent(
        **event.model_dump(), broadcast_id="b", variant_id="v", tags=["x"]
    )
    assert out[0].value == serialize(expected)
    assert out[0].key == b"m1"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "malformed JSON"),
        (
            b'{"event_version": 7, "team_id": "t", "message_id": "m", "status": "delivered"}',
            "unsupported event_version 7",
        ),
        (b'{"team_id": "t", "status": "delivered"}', "message_id: Field required"),
        (b'{"team_id": "t", "message_id": "m", "status": "exploded"}', "status: Input should be"),
        (b"[1, 2]", "event must be a JSON object"),
    ],
)
def test_bad_input_goes_to_dead_letter_with_reason(payload: bytes, reason: str) -> None:
    out = run([source_message(TOPIC, payload)], FakeRedis())
    assert [m.topic for m in out] == [Topic.DEAD_LETTER.value]
    letter = orjson.loads(out[0].value)
    assert reason in letter["reason"]
    assert letter["source_topic"] == TOPIC
    assert letter["payload"] == payload.decode()


def test_missing_mapping_is_retried_then_found() -> None:
    redis = FakeRedis()
    redis.map_later("late", MessageMapping(team_id="team-1", contact_id="c9"), after_calls=2)
    event = status_event("late", MessageStatus.DELIVERED)
    out = run(
        [source_message(TOPIC, serialize(event)), TestingSource.PAUSE(timedelta(seconds=0.5))],
        redis,
        [0.05, 0.05, 0.05],
    )
    rows = by_topic(out, Topic.CLICKHOUSE_MESSAGES)
    assert [r["contact_id"] for r in rows] == ["c9"]
    assert by_topic(out, Topic.DEAD_LETTER) == []
    assert len(redis.mget_calls) >= 3


def test_missing_mapping_dead_lettered_after_bounded_retries() -> None:
    redis = FakeRedis()
    event = status_event("ghost", MessageStatus.DELIVERED)
    out = run(
        [source_message(TOPIC, serialize(event)), TestingSource.PAUSE(timedelta(seconds=0.5))],
        redis,
    )
    letters = by_topic(out, Topic.DEAD_LETTER)
    assert len(letters) == 1
    assert "no message mapping for message_id 'ghost' after 3 lookups" in letters[0]["reason"]
    assert by_topic(out, Topic.CLICKHOUSE_MESSAGES) == []
    # One lookup inline plus one per configured delay, then it stops.
    assert len(redis.mget_calls) == 3


def test_team_mismatch_is_refused() -> None:
    # A mapping stored under the event's team that names another team (a corrupt write).
    redis = FakeRedis()
    redis.set(RedisKeys.message_mapping("team-1", "m1"), serialize(MessageMapping(team_id="x")))
    out = run(
        [source_message(TOPIC, serialize(status_event("m1", MessageStatus.DELIVERED)))], redis
    )
    letters = by_topic(out, Topic.DEAD_LETTER)
    assert len(letters) == 1 and "team mismatch" in letters[0]["reason"]


def test_another_teams_message_is_not_found_under_the_events_team() -> None:
    # The mapping key carries the event's team (kibamail.redis_keys): an event naming
    # another team's message id finds nothing and is never joined to that message.
    redis = FakeRedis()
    redis.map("m1", MessageMapping(team_id="other-team", contact_id="theirs"))
    out = run(
        [
            source_message(TOPIC, serialize(status_event("m1", MessageStatus.DELIVERED))),
            TestingSource.PAUSE(timedelta(seconds=0.5)),
        ],
        redis,
    )
    letters = by_topic(out, Topic.DEAD_LETTER)
    assert len(letters) == 1 and "no message mapping for message_id 'm1'" in letters[0]["reason"]
    assert by_topic(out, Topic.CLICKHOUSE_MESSAGES) == []


@pytest.mark.parametrize("stored", [b"not json", b'{"team_id": "team-1", "tags": "x"}', b"{}"])
def test_unreadable_mapping_is_dead_lettered(stored: bytes) -> None:
    redis = FakeRedis()
    redis.set(RedisKeys.message_mapping("team-1", "m1"), stored)
    out = run(
        [source_message(TOPIC, serialize(status_event("m1", MessageStatus.DELIVERED)))], redis
    )
    letters = by_topic(out, Topic.DEAD_LETTER)
    assert len(letters) == 1 and letters[0]["reason"].startswith("unreadable mapping for m1")
    assert by_topic(out, Topic.CLICKHOUSE_MESSAGES) == []


def test_one_batch_mixing_every_outcome() -> None:
    redis = FakeRedis()
    for i in range(6):
        redis.map(f"ok{i}", MessageMapping(team_id="team-1", contact_id=f"c{i}"))
    # Stored under team-1's key but naming team-2: the team check refuses it.
    redis.set(RedisKeys.message_mapping("team-1", "other"), serialize(MessageMapping(team_id="t2")))
    good = [serialize(status_event(f"ok{i}", MessageStatus.DELIVERED)) for i in range(6)]
    inputs = [
        *good[:3],
        b"{broken",
        serialize(status_event("other", MessageStatus.DELIVERED)),
        serialize(status_event("ghost", MessageStatus.DELIVERED)),
        *good[3:],
    ]
    out = run(
        [source_message(TOPIC, p, i) for i, p in enumerate(inputs)]
        + [TestingSource.PAUSE(timedelta(seconds=0.5))],
        redis,
    )
    rows = by_topic(out, Topic.CLICKHOUSE_MESSAGES)
    assert [r["contact_id"] for r in rows] == [f"c{i}" for i in range(6)]
    expected = [
        serialize(CorrelatedMessageEvent(**orjson.loads(p), contact_id=f"c{i}"))
        for i, p in enumerate(good)
    ]
    assert [m.value for m in out if m.topic == Topic.CLICKHOUSE_MESSAGES.value] == expected
    reasons = sorted(letter["reason"].split(":")[0] for letter in by_topic(out, Topic.DEAD_LETTER))
    assert reasons == ["malformed JSON", "mapping missing", "team mismatch"]
