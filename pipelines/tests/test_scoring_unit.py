from __future__ import annotations

import random
from datetime import timedelta

import orjson
import pytest
from bytewax.testing import TestingSink, TestingSource, run_main

from kibamail.contracts import TeamPauseEvent, Topic, deserialize, serialize
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from mta.features import simhash, submission_features
from pipelines.scoring import bands, build_flow
from pipelines.tests.fakes import T0, FakeRedis, source_message
from pipelines.tests.traffic import newsletter, transactional

pytestmark = pytest.mark.unit

TOPIC = Topic.SUBMISSION_FEATURES.value


def features_stream(team: str, make, count: int, spacing_seconds: float, seed: int, start=T0):
    rng = random.Random(seed)
    payloads = []
    for i in range(count):
        data, to = make(rng)
        # The MTA's own feature extraction, as on its acceptance path.
        features = submission_features(team, f"{team}-{i}", [to], data)
        features = features.model_copy(
            update={"occurred_at": start + timedelta(seconds=i * spacing_seconds)}
        )
        payloads.append(serialize(features))
    return payloads


def run(payloads: list[bytes], redis: FakeRedis) -> list:
    out: list = []
    flow = build_flow(
        Settings(),
        source=TestingSource([source_message(TOPIC, p, i) for i, p in enumerate(payloads)], 50),
        sink=TestingSink(out),
        redis_factory=lambda: redis,
    )
    run_main(flow)
    return out


def test_transactional_traffic_is_never_paused() -> None:
    # Two busy hours of resets, receipts and notifications (one every ~3 s).
    payloads = features_stream("shop", transactional, 2500, 2.9, seed=1)
    redis = FakeRedis()
    out = run(payloads, redis)
    assert [m for m in out if m.topic == Topic.TEAM_PAUSES.value] == []
    assert RedisKeys.team_paused("shop") not in redis.data
    # The bulk gate's score stays low.
    assert float(redis.data[RedisKeys.reputation_throttle("bulk_score", "shop")]) < 0.6


def test_newsletter_shaped_traffic_is_paused_quickly() -> None:
    redis = FakeRedis()
    warmup = features_stream("shop", transactional, 600, 6.0, seed=2)  # an hour of normal mail
    blast_start = T0 + timedelta(hours=1)
    blast = features_stream("shop", newsletter, 400, 0.2, seed=3, start=blast_start)
    out = run(warmup + blast, redis)
    pauses = [
        deserialize(TeamPauseEvent, m.value) for m in out if m.topic == Topic.TEAM_PAUSES.value
    ]
    assert len(pauses) == 1  # one pause per cooldown, not one per message
    pause = pauses[0]
    blast_index = int((pause.occurred_at - blast_start).total_seconds() / 0.2)
    assert 0 <= blast_index < 60, blast_index  # bounded number of newsletter messages
    assert pause.paused and pause.source == "scoring" and pause.score >= 0.7
    assert "List-Unsubscribe or marketing markers" in pause.reason
    flag = orjson.loads(redis.data[RedisKeys.team_paused("shop")])
    assert flag["event_id"] == pause.event_id


def test_replayed_trigger_gives_the_same_pause_event() -> None:
    blast = features_stream("news", newsletter, 60, 0.5, seed=4)
    first = run(blast, FakeRedis())
    second = run(blast, FakeRedis())
    assert [m.value for m in first] == [m.value for m in second]


def test_bad_features_are_dead_lettered() -> None:
    out = run([b'{"team_id": "x"}', b"nope"], FakeRedis())
    reasons = sorted(orjson.loads(m.value)["reason"].split(":")[0] for m in out)
    assert reasons == ["invalid SubmissionFeatures", "malformed JSON"]
    assert {m.topic for m in out} == {Topic.DEAD_LETTER.value}


def test_near_duplicate_bands() -> None:
    base = b"Black week sale forty percent off every backpack until Sunday shop now"
    other = b"Your receipt for order 123456 two notebooks total 45 EUR charged to card"
    assert set(bands(simhash(base))) == set(bands(simhash(base)))
    assert not set(bands(simhash(base))) & set(bands(simhash(other)))
