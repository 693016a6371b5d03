"""Status events: written to a durable Redis outbox, published to Kafka by a drain task.

Delivery and SMTP acceptance never wait on Kafka. A worker records an outcome by
appending the event to its slot group's outbox ``RedisKeys.event_outbox(g)`` in the same
MULTI that acknowledges the queue entry, so a crash can never lose an event or record one
twice under two ids. ``OutboxPublisher`` (the core's ``kibamail.outbox`` publishing and
acknowledging, shared with the API's tracking outbox, here with the MTA's metrics) drains
every group's outbox with a consumer group (entries of a dead process are reclaimed),
hands one batch from all of them to one confluent-kafka producer (librdkafka's bounded
in-memory queue) and acknowledges outbox entries only after Kafka confirmed them. On one
Redis node the groups are read by one blocking XREADGROUP; on a cluster by one
non-blocking XREADGROUP per group in a pipeline, sleeping a little longer after each empty
round. While the broker is down the outboxes simply grow in Redis.

Event ids are deterministic (uuid5 over message id, recipient, status, attempt), so a
message redelivered after a crash yields the same ids and is deduplicated downstream.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from kibamail.contracts import MessageStatus, MessageStatusEvent
from kibamail.outbox import OutboxPublisher as CoreOutboxPublisher
from kibamail.outbox import add_to_outbox, consumer_name, outbox_fields
from kibamail.redis_batching import is_cluster_client
from kibamail.redis_keys import SLOT_GROUPS, RedisKeys
from kibamail.settings import Settings

from . import metrics
from .queue import IDLE_POLL

log = logging.getLogger(__name__)

__all__ = [
    "OutboxPublisher",
    "add_to_outbox",
    "consumer_name",
    "make_status_event",
    "outbox_fields",
    "status_event_id",
]

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


Entry = tuple[bytes, dict[bytes, bytes]]


class OutboxPublisher(CoreOutboxPublisher):
    """The MTA's outboxes (``RedisKeys.event_outbox(g)``, every slot group) with its
    Prometheus metrics."""

    def __init__(
        self, settings: Settings, redis: Any, groups: int = SLOT_GROUPS, **options: Any
    ) -> None:
        super().__init__(
            settings,
            redis,
            stream=RedisKeys.event_outbox(0),
            group=RedisKeys.EVENT_OUTBOX_GROUP,
            on_depth=metrics.OUTBOX_DEPTH.set,
            on_published=metrics.EVENTS_PUBLISHED.inc,
            **options,
        )
        self.streams = [RedisKeys.event_outbox(g) for g in range(groups)]
        self.cluster = is_cluster_client(redis)
        self._idle = IDLE_POLL[0]

    async def ensure_group(self) -> None:
        for stream in self.streams:
            try:
                await self.redis.xgroup_create(stream, self.group, id="0", mkstream=True)
            except Exception as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _read_all(self, start: str, block_ms: int | None) -> list[tuple[str, Entry]]:
        """XREADGROUP from ``start`` ("0": this consumer's pending, ">": new) of every
        outbox: one call on one node, one per outbox (pipelined) on a cluster."""
        if not self.cluster:
            result = await self.redis.xreadgroup(
                self.group,
                self.consumer,
                dict.fromkeys(self.streams, start),
                count=self.batch,
                block=block_ms,
            )
            return [(_text(name), e) for name, entries in result or [] for e in entries]
        pipe = self.redis.pipeline(transaction=False)
        for stream in self.streams:
            pipe.xreadgroup(self.group, self.consumer, {stream: start}, count=self.batch)
        found = [
            (stream, e)
            for stream, result in zip(self.streams, await pipe.execute(), strict=True)
            for _name, entries in result or []
            for e in entries
        ]
        if block_ms is not None:
            if found:
                self._idle = IDLE_POLL[0]
            else:
                await asyncio.sleep(min(self._idle, block_ms / 1000))
                self._idle = min(self._idle * 2, IDLE_POLL[1])
        return found

    async def _claim_all(self) -> list[tuple[str, Entry]]:
        pipe = self.redis.pipeline(transaction=False)
        for stream in self.streams:
            pipe.xautoclaim(
                stream, self.group, self.consumer, self.reclaim_idle_ms, "0-0", count=self.batch
            )
        return [
            (stream, (eid, f))
            for stream, claimed in zip(self.streams, await pipe.execute(), strict=True)
            for eid, f in claimed[1]
            if f
        ]

    async def _read_groups(self, pending_first: bool) -> list[tuple[str, Entry]]:
        if pending_first:
            entries = await self._read_all("0", None)
            if entries:
                return entries
            claimed = await self._claim_all()
            if claimed:
                return claimed
        return await self._read_all(">", 500)

    async def _depth(self) -> int:
        pipe = self.redis.pipeline(transaction=False)
        for stream in self.streams:
            pipe.xlen(stream)
        return sum(int(n) for n in await pipe.execute())

    async def run(self, stop: asyncio.Event) -> None:
        await self.ensure_group()
        pending_first = True
        reclaim_every = 0
        while not stop.is_set():
            try:
                entries = await self._read_groups(pending_first or reclaim_every % 50 == 0)
                if reclaim_every % 20 == 0:
                    self.on_depth(await self._depth())
                reclaim_every += 1
                entries = [(stream, (eid, f)) for stream, (eid, f) in entries if f]
                if not entries:
                    pending_first = False
                    continue
                # Ids are unique per outbox only: Kafka is handed each entry's position.
                numbered = [(b"%d" % i, f) for i, (_s, (_eid, f)) in enumerate(entries)]
                acked = await asyncio.to_thread(self._publish_blocking, numbered)
                if acked:
                    by_stream: dict[str, list[bytes]] = {}
                    for i in acked:
                        stream, (eid, _f) = entries[int(i)]
                        by_stream.setdefault(stream, []).append(eid)
                    pipe = self.redis.pipeline(transaction=False)
                    for stream, ids in by_stream.items():
                        pipe.xack(stream, self.group, *ids)
                        pipe.xdel(stream, *ids)
                    await pipe.execute()
                    self.on_published(len(acked))
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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
