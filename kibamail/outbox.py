"""Durable event outboxes: events are XADDed to a Redis stream, a publisher drains it to Kafka.

Nobody who records an event waits on Kafka, and nobody loses one to a crash: the event is
in Redis (durable as ``RedisSettings.durability`` says) before the caller answers. The
MTA writes status events in the MULTI that acknowledges its queue entry (its slot group's
``RedisKeys.event_outbox``; an operator's lift of a team pause goes to the team's group
outbox too, in the lift's MULTI); the API writes tracking hits before it answers them
(``RedisKeys.API_EVENT_OUTBOX``, one global stream of single-key XADDs).
``OutboxPublisher`` drains one or several outboxes with a
consumer group (entries of a dead process are reclaimed), hands batches to confluent-kafka and
acknowledges (XACK + XDEL) outbox entries only after Kafka confirmed them. While the broker
is down the outbox simply grows in Redis.

At-least-once: a publisher killed between Kafka's ack and its XACK publishes those
entries again. The serialized event (its ``event_id`` included) is what the outbox holds,
so a republish repeats the same ids and the sinks' ReplacingMergeTree collapses them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel

from kibamail.contracts import Topic, serialize
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings

log = logging.getLogger(__name__)

Entry = tuple[bytes, dict[bytes, bytes]]


def outbox_fields(topic: Topic, key: str, event: BaseModel) -> dict[str, bytes]:
    return {"topic": topic.value.encode(), "key": key.encode(), "value": serialize(event)}


def add_to_outbox(pipe: Any, topic: Topic, key: str, event: BaseModel, stream: str) -> None:
    """Queue one event on a (transactional) Redis pipeline, or any client with xadd."""
    pipe.xadd(stream, outbox_fields(topic, key, event))


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _ignore(_value: int) -> None:
    return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class OutboxPublisher:
    """Drains Redis outboxes into Kafka (at-least-once; ids make it exactly-once rows).

    ``streams``: one outbox (the API's) or several (the MTA's, one per slot group). On one
    Redis node they are read by one blocking XREADGROUP; on a cluster, where a multi-slot
    command is a CROSSSLOT error, by one non-blocking XREADGROUP per stream in a pipeline,
    sleeping a little longer after each empty round (``IdlePoll``)."""

    def __init__(
        self,
        settings: Settings,
        redis: Any,
        *,
        streams: Sequence[str],
        group: str = RedisKeys.EVENT_OUTBOX_GROUP,
        batch: int = 2000,
        reclaim_idle_ms: int = 30_000,
        on_depth: Callable[[int], None] = _ignore,
        on_published: Callable[[int], None] = _ignore,
    ) -> None:
        from kibamail.clients import kafka_producer_config
        from kibamail.redis_batching import IdlePoll, is_cluster_client

        if not streams:
            raise ValueError("an outbox publisher needs at least one stream")
        self.redis = redis
        self.streams = list(streams)
        self.group = group
        self.batch = batch
        self.reclaim_idle_ms = reclaim_idle_ms
        self.on_depth = on_depth
        self.on_published = on_published
        self.consumer = consumer_name()
        self.cluster = is_cluster_client(redis)
        self._idle = IdlePoll()
        self.producer_config = kafka_producer_config(
            settings,
            **{"queue.buffering.max.messages": 100_000, "message.timeout.ms": 30_000},
        )
        self._producer: Any = None

    async def ensure_group(self) -> None:
        for stream in self.streams:
            try:
                await self.redis.xgroup_create(stream, self.group, id="0", mkstream=True)
            except Exception as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def _publish_blocking(self, entries: list[Entry]) -> list[bytes]:
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
            await self._idle.after(bool(found), block_ms / 1000)
        return found

    async def _claim_all(self) -> list[tuple[str, Entry]]:
        """Entries of a dead publisher idle longer than ``reclaim_idle_ms``, every outbox."""
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

    async def _read(self, pending_first: bool) -> list[tuple[str, Entry]]:
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
                entries = await self._read(pending_first or reclaim_every % 50 == 0)
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
