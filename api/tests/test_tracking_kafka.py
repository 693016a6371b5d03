"""A tracking hit reaches the real Kafka-protocol broker (Tansu) through the API outbox and
its publisher (api.outbox_worker, the core's OutboxPublisher)."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer
from fastapi.testclient import TestClient

from api.app import create_app
from api.outbox_worker import build_publisher
from api.services.rendering import tracked_html
from kibamail.clients import async_redis_client, kafka_consumer_config
from kibamail.contracts import EmailOpenEvent, Topic, deserialize
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings

pytestmark = pytest.mark.integration


async def publish_outbox(settings: Settings) -> None:
    """Run the outbox publisher until the API outbox is empty (entries go after Kafka's ack)."""
    redis = async_redis_client(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(build_publisher(settings, redis, 1.0).run(stop))
    try:
        deadline = time.monotonic() + 30
        while await redis.xlen(RedisKeys.API_EVENT_OUTBOX) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await task
        await redis.aclose()


def test_open_hit_lands_on_the_opens_topic(
    api_settings: Settings, kafka_service: str, redis_client: Any
) -> None:
    message_id = f"{uuid.uuid4()}@acme.test"
    with TestClient(create_app(api_settings, run_scheduler=False)) as client:
        state = client.app.state.km  # type: ignore[attr-defined]
        html = tracked_html(
            "<p>x</p>",
            signer=state.signer,
            public_url="http://t",
            message_id=message_id,
            team_id="tk",
        )
        match = re.search(r'src="http://t(/t/o/[^"]+)"', html)
        assert match is not None
        assert client.get(match.group(1)).status_code == 200
    assert redis_client.xlen(RedisKeys.API_EVENT_OUTBOX) == 1  # held durably until published
    asyncio.run(publish_outbox(api_settings))
    assert redis_client.xlen(RedisKeys.API_EVENT_OUTBOX) == 0
    consumer = Consumer(kafka_consumer_config(f"api-test-{uuid.uuid4().hex}", api_settings))
    consumer.subscribe([Topic.EMAIL_OPENS.value])
    found: list[EmailOpenEvent] = []
    deadline = time.monotonic() + 30
    try:
        while not found and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            event = deserialize(EmailOpenEvent, msg.value() or b"")
            if event.message_id == message_id:
                found.append(event)
    finally:
        consumer.close()
    assert len(found) == 1 and found[0].team_id == "tk"
