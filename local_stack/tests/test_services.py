"""The embedded infrastructure services start for real and speak their protocols."""

from __future__ import annotations

import time
import uuid

import pytest

from kibamail.clients import kafka_consumer_config, kafka_producer_config
from kibamail.contracts import MessageStatusEvent, Topic, deserialize, serialize
from kibamail.settings import Settings

pytestmark = pytest.mark.integration


def test_kafka_broker_round_trips_a_contract_event(
    kafka_service: str, test_settings: Settings
) -> None:
    from confluent_kafka import Consumer, Producer

    event = MessageStatusEvent(team_id="t1", message_id=uuid.uuid4().hex, status="delivered")
    producer = Producer(kafka_producer_config(test_settings))
    producer.produce(Topic.MESSAGE_STATUSES.value, serialize(event), key=event.team_id)
    assert producer.flush(10) == 0
    consumer = Consumer(kafka_consumer_config(f"test-{uuid.uuid4().hex}", test_settings))
    consumer.subscribe([Topic.MESSAGE_STATUSES.value])
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and event not in seen:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            seen.append(deserialize(MessageStatusEvent, msg.value() or b""))
    consumer.close()
    assert event in seen


def test_contract_topics_exist(kafka_service: str, test_settings: Settings) -> None:
    from confluent_kafka.admin import AdminClient

    topics = AdminClient(test_settings.kafka.client_config()).list_topics(timeout=10).topics
    assert {t.value for t in Topic} <= set(topics)


def test_redis_is_real(redis_client) -> None:
    redis_client.set("k", "v")
    assert redis_client.get("k") == b"v"
    assert redis_client.info("server")["redis_version"]


def test_mariadb_accepts_sqlalchemy_connections(mariadb_url: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(mariadb_url)
    with engine.connect() as conn:
        version: str = conn.exec_driver_sql("SELECT VERSION()").scalar_one()
    engine.dispose()
    assert "MariaDB" in version
