"""The API's one Kafka producer: fire-and-forget with a bounded local buffer.

Tracking hits are answered at once; librdkafka batches and retries in the
background (idempotent producer). A poll thread serves delivery reports. If the
buffer is full we wait briefly for it to drain rather than drop the event.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from prometheus_client import Counter

from kibamail.clients import kafka_producer_config
from kibamail.contracts import Event, Topic, serialize
from kibamail.settings import Settings

log = logging.getLogger(__name__)

EVENTS_PRODUCED = Counter("kibamail_api_events_produced_total", "Events handed to Kafka", ["topic"])
EVENTS_FAILED = Counter(
    "kibamail_api_events_failed_total", "Events Kafka did not accept", ["topic", "reason"]
)

BUFFER_MESSAGES = 200_000
FULL_BUFFER_WAIT_SECONDS = 2.0


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
