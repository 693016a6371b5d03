"""How the API hands events over: tracking hits through the durable outbox, the rest to Kafka.

Opens, clicks and unsubscribes (``EventOutbox``): one XADD to
``RedisKeys.API_EVENT_OUTBOX`` before the hit is answered, so an answered hit is never
lost to a crash of the API or of Kafka; ``kibamail api outbox`` (api/outbox_worker.py)
publishes the entries to Kafka with broker acks. Concurrent hits share one pipeline round
trip (``PipelineBatcher``), like the send path's auto-pipelining.

``EventProducer``: the direct Kafka producer still used by the other events (domain
checks): fire-and-forget with a bounded local buffer; librdkafka batches and retries in
the background (idempotent producer), a poll thread serves delivery reports, and a full
buffer is waited on briefly rather than dropping the event.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from prometheus_client import Counter

from kibamail.clients import kafka_producer_config
from kibamail.contracts import Event, Topic, serialize
from kibamail.outbox import add_to_outbox, outbox_fields
from kibamail.redis_batching import PipelineBatcher
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings

log = logging.getLogger(__name__)

EVENTS_PRODUCED = Counter("kibamail_api_events_produced_total", "Events handed to Kafka", ["topic"])
EVENTS_FAILED = Counter(
    "kibamail_api_events_failed_total", "Events Kafka did not accept", ["topic", "reason"]
)

BUFFER_MESSAGES = 200_000
FULL_BUFFER_WAIT_SECONDS = 2.0


class EventOutbox:
    """Tracking events into the API outbox: ``await outbox.add(...)`` returns once Redis
    holds the event (one XADD, auto-pipelined with the other hits of this loop turn)."""

    def __init__(self, redis: Any) -> None:
        self._batcher = PipelineBatcher(redis, transaction=False)

    async def add(self, topic: Topic, event: Event, key: str) -> None:
        fields = outbox_fields(topic, key, event)
        await self._batcher.run(lambda pipe: pipe.xadd(RedisKeys.API_EVENT_OUTBOX, fields))


def event_outbox(state: Any) -> EventOutbox:
    """The app's EventOutbox (``AppState.event_outbox``), created on first use."""
    outbox: EventOutbox | None = state.event_outbox
    if outbox is None:
        outbox = state.event_outbox = EventOutbox(state.redis)
    return outbox


def add_to_outbox_sync(sync_redis: Any, topic: Topic, event: Event, key: str) -> None:
    """The same hand-over from threadpool code (a sync Redis client)."""
    add_to_outbox(sync_redis, topic, key, event, stream=RedisKeys.API_EVENT_OUTBOX)


class EventProducer:
    def __init__(self, settings: Settings) -> None:
        from confluent_kafka import Producer

        self._producer = Producer(
            kafka_producer_config(
                settings,
                **{
                    "queue.buffering.max.messages": BUFFER_MESSAGES,
                    "queue.buffering.max.kbytes": 256 * 1024,
                    "message.timeout.ms": 300_000,
                },
            )
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll_loop, name="kafka-poll", daemon=True)
        self._thread.start()

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.2)

    @staticmethod
    def _on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            EVENTS_FAILED.labels(msg.topic(), str(err.name())).inc()
            log.error("kafka delivery failed for %s: %s", msg.topic(), err)

    def produce(self, topic: Topic, event: Event, key: str | None = None) -> None:
        payload = serialize(event)
        deadline = time.monotonic() + FULL_BUFFER_WAIT_SECONDS
        while True:
            try:
                self._producer.produce(
                    topic.value,
                    value=payload,
                    key=(key or event.team_id).encode(),
                    on_delivery=self._on_delivery,
                )
                EVENTS_PRODUCED.labels(topic.value).inc()
                return
            except BufferError:
                if time.monotonic() > deadline:
                    EVENTS_FAILED.labels(topic.value, "buffer_full").inc()
                    raise
                time.sleep(0.01)

    def flush(self, timeout: float = 10.0) -> int:
        return int(self._producer.flush(timeout))

    def close(self, timeout: float = 10.0) -> int:
        remaining = self.flush(timeout)
        self._stop.set()
        self._thread.join(timeout=2)
        return remaining
