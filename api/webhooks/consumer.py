"""`kibamail api webhooks`: consume the event stream into deliveries, and deliver them.

The consumer commits its Kafka offsets only after the deliveries are committed in the
database, and recording is idempotent per (endpoint, event id): at-least-once in,
exactly one delivery row out.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

import httpx
from confluent_kafka import Producer
from sqlalchemy.orm import Session, sessionmaker

from api.db import make_engine, make_sessionmaker
from api.webhooks.delivery import TOPICS, dispatch_due, record_event
from api.webhooks.ssrf import guard_from_settings
from kibamail.clients import kafka_consumer_config, kafka_producer_config
from kibamail.dead_letters import write as write_dead_letter
from kibamail.settings import Settings

log = logging.getLogger(__name__)
GROUP_ID = "api-webhooks"


def consume_batch(
    consumer: Any,
    sessions: sessionmaker[Session],
    max_messages: int = 500,
    timeout: float = 1.0,
    dead_letters: Any = None,
) -> int:
    """Record one fetch's deliveries; a malformed event goes to the dead-letter store
    (``dead_letters``: a confluent-kafka producer), acknowledged by the broker before the
    offsets are committed, so it is never lost, only set aside."""
    messages = consumer.consume(num_messages=max_messages, timeout=timeout)
    good = [m for m in messages if m.error() is None]
    for message in messages:
        if message.error() is not None:
            log.warning("kafka error: %s", message.error())
    if not good:
        return 0
    created = 0
    malformed = 0
    with sessions.begin() as db:
        for message in good:
            try:
                created += record_event(db, message.topic(), message.value())
            except (ValueError, KeyError, TypeError) as exc:
                malformed += 1
                log.error("malformed event on %s, dead-lettered: %s", message.topic(), exc)
                if dead_letters is not None:
                    reason = f"malformed webhook event: {exc}"[:500]
                    write_dead_letter(dead_letters, message.topic(), message.value(), reason)
    if malformed and dead_letters is not None and dead_letters.flush(30) > 0:
        raise RuntimeError("dead letters not acknowledged by the broker; offsets not committed")
    consumer.commit(asynchronous=False)
    return created


def build_consumer(settings: Settings) -> Any:
    from confluent_kafka import Consumer

    consumer = Consumer(kafka_consumer_config(GROUP_ID, settings))
    consumer.subscribe([t.value for t in TOPICS])
    return consumer


def run(settings: Settings) -> None:
    logging.basicConfig(level=logging.INFO)
    engine = make_engine(settings.database.url)
    sessions = make_sessionmaker(engine)
    stopping = threading.Event()

    def stop(_signum: int, _frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    guard = guard_from_settings(settings)

    def deliver() -> None:
        # trust_env=False: a proxy from the environment would bypass the pinned address.
        with httpx.Client(trust_env=False, follow_redirects=False) as client:
            while not stopping.is_set():
                try:
                    if dispatch_due(sessions, client, guard) == 0:
                        time.sleep(0.5)
                except Exception:
                    log.exception("webhook dispatch failed; retrying")
                    time.sleep(1)

    dispatcher = threading.Thread(target=deliver, name="webhook-dispatch", daemon=True)
    dispatcher.start()
    consumer = build_consumer(settings)
    dead_letters = Producer(kafka_producer_config(settings))
    try:
        while not stopping.is_set():
            consume_batch(consumer, sessions, dead_letters=dead_letters)
    finally:
        consumer.close()
        dispatcher.join(timeout=15)
        engine.dispose()
