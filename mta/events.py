"""Status events: written to a durable Redis outbox, published to Kafka by a drain task.

Delivery and SMTP acceptance never wait on Kafka. A worker records an outcome by
appending the event to ``RedisKeys.EVENT_OUTBOX`` in the same MULTI that acknowledges
the queue entry, so a crash can never lose an event or record one twice under two
ids. ``OutboxPublisher`` drains the outbox with a consumer group (entries of a dead
process are reclaimed), hands batches to confluent-kafka (librdkafka's bounded
in-memory queue) and acknowledges outbox entries only after Kafka confirmed them.
While the broker is down the outbox simply grows in Redis.

Event ids are deterministic (uuid5 over message id, recipient, status, attempt), so a
message redelivered after a crash yields the same ids and is deduplicated downstream.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from typing import Any

from pydantic import BaseModel

from kibamail.contracts import MessageStatus, MessageStatusEvent, Topic, serialize
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings

from . import metrics

log = logging.getLogger(__name__)

_EVENT_NAMESPACE = uuid.UUID("6f1c5d1e-6c36-4c8b-9d1e-6b1a3e0c7a11")


def status_event_id(message_id: str, recipient: str, status: MessageStatus, attempt: int) -> str:
    return uuid.uuid5(_EVENT_NAMESPACE, f"{message_id}|{recipient}|{status}|{attempt}").hex


def make_status_event(**fields: Any) -> MessageStatusEvent:
    """A MessageStatusEvent whose event_id is derived from its identity fields."""
    fields.setdefault(
        "event_id",
        status_event_id(
            fields["message_id"],
            fields.get("recipient", ""),
            fields["status"],
            fields.get("attempt", 0),
        ),
    )
    return MessageStatusEvent(**fields)


def outbox_fields(topic: Topic, key: str, event: BaseModel) -> dict[str, bytes]:
    return {"topic": topic.value.encode(), "key": key.encode(), "value": serialize(event)}


def add_to_outbox(pipe: Any, topic: Topic, key: str, event: BaseModel) -> None:
    """Queue one event on a (transactional) Redis pipeline."""
    pipe.xadd(RedisKeys.EVENT_OUTBOX, outbox_fields(topic, key, event))


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class OutboxPublisher:
    """Drains the Redis outbox into Kafka (at-least-once; ids make it exactly-once rows)."""

    def __init__(
        self,
        settings: Settings,
        redis: Any,
        *,
        batch: int = 2000,
        reclaim_idle_ms: int = 30_000,
    ) -> None:
        from kibamail.clients import kafka_producer_config

        self.redis = redis
        self.batch = batch
        self.reclaim_idle_ms = reclaim_idle_ms
        self.consumer = consumer_name()
        self.producer_config = kafka_producer_config(
            settings,
            **{"queue.buffering.max.messages": 100_000, "message.timeout.ms": 30_000},
        )
        self._producer: Any = None

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(
                RedisKeys.EVENT_OUTBOX, RedisKeys.EVENT_OUTBOX_GROUP, id="0", mkstream=True
            )
        except Exception as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _publish_blocking(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[bytes]:
        """Produce and wait for acks (runs in a thread); returns the entry ids Kafka acked."""
        from confluent_kafka import Producer

        if self._producer is None:
            self._producer = Producer(self.producer_config)
        acked: list[bytes] = []

        def on_delivery(err: Any, _msg: Any, entry_id: bytes) -> None:
            if err is None:
                acked.append(entry_id)

        for entry_id, fields in entries:
            while True:
                try:
                    self._producer.produce(
                        fields[b"topic"].decode(),
                        value=fields[b"value"],
                        key=fields.get(b"key") or None,
                        on_delivery=lambda err, msg, eid=entry_id: on_delivery(err, msg, eid),
                    )
                    break
                except BufferError:
                    self._producer.poll(0.5)
        self._producer.flush(15)
        return acked

    async def _read(self, pending_first: bool) -> list[tuple[bytes, dict[bytes, bytes]]]:
        group, stream = RedisKeys.EVENT_OUTBOX_GROUP, RedisKeys.EVENT_OUTBOX
        if pending_first:
            result = await self.redis.xreadgroup(
                group, self.consumer, {stream: "0"}, count=self.batch
            )
            entries = result[0][1] if result else []
            if entries:
                return entries
            claimed = await self.redis.xautoclaim(
                stream, group, self.consumer, self.reclaim_idle_ms, "0-0", count=self.batch
            )
            if claimed[1]:
                return [(eid, f) for eid, f in claimed[1] if f]
        result = await self.redis.xreadgroup(
            group, self.consumer, {stream: ">"}, count=self.batch, block=500
        )
        return result[0][1] if result else []

    async def run(self, stop: asyncio.Event) -> None:
        await self.ensure_group()
        pending_first = True
        reclaim_every = 0
        while not stop.is_set():
            try:
                entries = await self._read(pending_first or reclaim_every % 50 == 0)
                if reclaim_every % 20 == 0:
                    metrics.OUTBOX_DEPTH.set(await self.redis.xlen(RedisKeys.EVENT_OUTBOX))
                reclaim_every += 1
                if not entries:
                    pending_first = False
                    continue
                entries = [(eid, f) for eid, f in entries if f]
                acked = await asyncio.to_thread(self._publish_blocking, entries)
                if acked:
                    pipe = self.redis.pipeline(transaction=False)
                    pipe.xack(RedisKeys.EVENT_OUTBOX, RedisKeys.EVENT_OUTBOX_GROUP, *acked)
                    pipe.xdel(RedisKeys.EVENT_OUTBOX, *acked)
                    await pipe.execute()
                    metrics.EVENTS_PUBLISHED.inc(len(acked))
                pending_first = len(acked) < len(entries)
                if pending_first:
                    log.warning("kafka acked %d of %d events; retrying", len(acked), len(entries))
                    await asyncio.sleep(1.0)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox publisher error; retrying")
                pending_first = True
                await asyncio.sleep(1.0)
        if self._producer is not None:
            await asyncio.to_thread(self._producer.flush, 5)
