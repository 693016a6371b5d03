"""A pause decided by the scoring dataflow reaches the team's webhook, signed.

Scoring runs on newsletter-shaped features with the real Redis and the real broker
(its pause event goes to ``team_pauses``); the API's webhook consumer turns it into a
delivery row (SQLite, as in the API) and the dispatcher POSTs it to a loopback
receiver, where the Standard Webhooks signature verifies with the endpoint's secret.
An un-pause event becomes ``team.unpaused``.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from bytewax.testing import TestingSource, run_main

from api.bootstrap import create_team_with_key
from api.db import make_engine, make_sessionmaker
from api.models.content import WebhookEndpoint
from api.webhooks.consumer import consume_batch
from api.webhooks.delivery import EVENT_TYPES, TOPICS, dispatch_due
from api.webhooks.signing import new_secret, verify
from api.webhooks.ssrf import guard_from_settings
from kibamail.contracts import TeamPauseEvent, Topic, serialize
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from mta.features import submission_features
from pipelines.scoring import build_flow
from pipelines.tests.fakes import source_message
from pipelines.tests.traffic import newsletter
from testing.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.integration


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(status=204) as receiver:
        yield receiver


@pytest.fixture
def receiver(webhook_receiver: WebhookReceiver) -> str:
    return webhook_receiver.url("/hooks/kibamail")


@pytest.fixture
def webhook_settings(test_settings: Settings, redis_client: Any, kafka_service: str) -> Settings:
    """Loopback receivers allowed (the SSRF filter's own tests run with it closed)."""
    api = test_settings.api.model_copy(
        update={"webhook_allow_http": True, "webhook_allow_private": True}
    )
    return test_settings.model_copy(update={"api": api})


def pause_consumer(settings: Settings) -> Any:
    """The webhook consumer's job on ``team_pauses`` alone, in a group of this test's own."""
    from confluent_kafka import Consumer

    from kibamail.clients import kafka_consumer_config

    consumer = Consumer(kafka_consumer_config(f"pause-webhooks-{uuid.uuid4().hex}", settings))
    consumer.subscribe([Topic.TEAM_PAUSES.value])
    return consumer


def consume_until(consumer: Any, sessions: Any, wanted: int, timeout: float = 60) -> int:
    created = 0
    deadline = time.monotonic() + timeout
    while created < wanted and time.monotonic() < deadline:
        created += consume_batch(consumer, sessions, timeout=1.0)
    return created


def dispatch_until(
    sessions: Any, settings: Settings, received: list[Any], wanted: int, timeout: float = 30
) -> None:
    guard = guard_from_settings(settings)
    deadline = time.monotonic() + timeout
    with httpx.Client(trust_env=False) as http:
        while len(received) < wanted and time.monotonic() < deadline:
            if dispatch_due(sessions, http, guard) == 0:
                time.sleep(0.2)


def test_scoring_pause_and_unpause_reach_the_teams_webhook(
    webhook_settings: Settings,
    redis_client: Any,
    webhook_receiver: WebhookReceiver,
    receiver: str,
) -> None:
    from pipelines.kafka_io import kafka_sink

    settings = webhook_settings
    assert Topic.TEAM_PAUSES in TOPICS
    assert {"team.paused", "team.unpaused"} <= set(EVENT_TYPES)
    tag = uuid.uuid4().hex[:8]
    team, _key = create_team_with_key(
        settings, email=f"ops-{tag}@example.com", team_name=f"Blast {tag}", domain=f"{tag}.example"
    )
    engine = make_engine(settings.database.url)
    sessions = make_sessionmaker(engine)
    secret = new_secret()
    with sessions.begin() as db:
        db.add(
            WebhookEndpoint(
                team_id=team,
                url=receiver,
                event_types=["team.paused", "team.unpaused"],
                secrets=[secret],
            )
        )
    consumer = pause_consumer(settings)
    try:
        rng = random.Random(3)
        payloads = []
        for i in range(60):
            data, to = newsletter(rng)
            payloads.append(serialize(submission_features(team, f"{team}-{i}", [to], data)))
        inputs = [
            source_message(Topic.SUBMISSION_FEATURES.value, p, i) for i, p in enumerate(payloads)
        ]
        flow = build_flow(
            settings,
            source=TestingSource(inputs, 20),
            sink=kafka_sink(settings),
        )
        run_main(flow)
        flag = orjson.loads(redis_client.get(RedisKeys.team_paused(team)))
        assert flag["paused"] and flag["source"] == "scoring"

        assert consume_until(consumer, sessions, 1) == 1
        dispatch_until(sessions, settings, webhook_receiver.received, 1)
        [(headers, body)] = webhook_receiver.received
        verify(secret, headers, body)
        delivery = orjson.loads(body)
        assert delivery["type"] == "team.paused"
        assert delivery["data"]["team_id"] == team
        assert delivery["data"]["event_id"] == flag["event_id"] == headers["webhook-id"]
        assert delivery["data"]["score"] == flag["score"]
        assert "bulk score" in delivery["data"]["reason"]

        # An Administrator's un-pause (the API's TeamPauseEvent) is delivered too.
        from confluent_kafka import Producer

        from kibamail.clients import kafka_producer_config

        unpause = TeamPauseEvent(team_id=team, paused=False, source="api", reason="reviewed")
        producer = Producer(kafka_producer_config(settings))
        producer.produce(Topic.TEAM_PAUSES.value, serialize(unpause), key=team.encode())
        assert producer.flush(10) == 0
        assert consume_until(consumer, sessions, 1) == 1
        dispatch_until(sessions, settings, webhook_receiver.received, 2)
        headers, body = webhook_receiver.received[1]
        verify(secret, headers, body)
        assert orjson.loads(body)["type"] == "team.unpaused"
        assert headers["webhook-id"] == unpause.event_id
    finally:
        consumer.close()
        with sessions.begin() as db:  # later consumers of the session's stream: nothing to do
            db.query(WebhookEndpoint).filter(WebhookEndpoint.team_id == team).update(
                {"enabled": False}
            )
        engine.dispose()
