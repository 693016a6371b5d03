"""Webhooks fed from the real Kafka stream, signed, retried on schedule, replayable."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from confluent_kafka import Producer
from fastapi.testclient import TestClient

from api.tests.conftest import signup
from api.webhooks.consumer import build_consumer, consume_batch
from api.webhooks.delivery import RETRY_SCHEDULE, dispatch_due
from api.webhooks.signing import SignatureError, signature_headers, verify
from api.webhooks.ssrf import guard_from_settings
from kibamail.clients import kafka_producer_config
from kibamail.contracts import CorrelatedMessageEvent, MessageStatus, Topic, serialize
from kibamail.settings import Settings
from testing.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.integration


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def receiver(webhook_receiver: WebhookReceiver) -> str:
    return webhook_receiver.url("/hook")


def test_signature_recipe() -> None:
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"type":"email.delivered"}'
    headers = signature_headers([secret], "msg_1", body, now=1_700_000_000)
    verify(secret, headers, body, now=1_700_000_010)
    with pytest.raises(SignatureError):
        verify(secret, headers, body + b" ", now=1_700_000_010)
    with pytest.raises(SignatureError):
        verify(secret, headers, body, now=1_700_000_000 + 3600)


def test_stream_event_becomes_a_signed_delivery_with_retries_and_replay(
    isolated_client: TestClient,
    api_settings: Settings,
    kafka_service: str,
    webhook_receiver: WebhookReceiver,
    receiver: str,
) -> None:
    client = isolated_client  # its own delivery table: dispatch_due counts only ours
    auth = signup(client)
    team = client.post("/v1/teams", json={"name": "W"}, headers=auth).json()["id"]
    base = f"/v1/teams/{team}/webhooks"
    bad = client.post(base, json={"url": receiver, "event_types": ["nope"]}, headers=auth)
    assert bad.status_code == 422
    endpoint = client.post(
        base, json={"url": receiver, "event_types": ["email.delivered"]}, headers=auth
    ).json()
    secret = endpoint["secret"]
    delivered = CorrelatedMessageEvent(
        team_id=team, message_id=f"{uuid.uuid4()}@x", status=MessageStatus.DELIVERED
    )
    deferred = CorrelatedMessageEvent(team_id=team, message_id="m@x", status=MessageStatus.DEFERRED)
    producer = Producer(kafka_producer_config(api_settings))
    for event in (deferred, delivered, delivered):  # a duplicate, as at-least-once allows
        producer.produce(Topic.CLICKHOUSE_MESSAGES.value, serialize(event))
    assert producer.flush(10) == 0

    sessions = client.app.state.km.sessions  # type: ignore[attr-defined]
    consumer = build_consumer(api_settings)
    try:
        deadline = time.monotonic() + 30
        created = 0
        while created == 0 and time.monotonic() < deadline:
            created += consume_batch(consumer, sessions, timeout=1.0)
        created += consume_batch(consumer, sessions, timeout=2.0)
    finally:
        consumer.close()
    assert created == 1  # filtered to email.delivered, duplicate event ignored

    webhook_receiver.status = 500
    guard = guard_from_settings(api_settings)
    with httpx.Client() as http:
        assert dispatch_due(sessions, http, guard) == 1
    log = client.get(f"{base}/{endpoint['id']}/deliveries", headers=auth).json()["data"]
    assert (
        log[0]["status"] == "pending"
        and log[0]["attempts"] == 1
        and log[0]["last_status_code"] == 500
    )
    assert log[0]["next_attempt_at"] is not None
    with httpx.Client() as http:
        assert dispatch_due(sessions, http, guard) == 0  # next try is RETRY_SCHEDULE[0] away
    assert RETRY_SCHEDULE[0].total_seconds() == 5

    webhook_receiver.status = 200
    rotated = client.post(f"{base}/{endpoint['id']}/rotate-secret", headers=auth).json()["secret"]
    replayed = client.post(
        f"{base}/{endpoint['id']}/deliveries/{log[0]['id']}/replay", headers=auth
    )
    assert replayed.status_code == 200
    with httpx.Client() as http:
        assert dispatch_due(sessions, http, guard) == 1
    headers, body = webhook_receiver.received[-1]
    assert headers["webhook-id"] == delivered.event_id
    verify(secret, headers, body)  # the old secret still verifies during a rotation
    verify(rotated, headers, body)
    assert b'"type":"email.delivered"' in body
    log = client.get(f"{base}/{endpoint['id']}/deliveries", headers=auth).json()["data"]
    assert log[0]["status"] == "delivered" and log[0]["attempts"] == 2
    other = signup(client)
    assert client.get(f"{base}/{endpoint['id']}/deliveries", headers=other).status_code == 404
