"""`kibamail api outbox`: publish the API's tracking outbox to Kafka.

Tracking hits are XADDed to ``RedisKeys.API_EVENT_OUTBOX`` before they are answered
(api.services.event_producer.EventOutbox); this process drains that stream with
``kibamail.outbox.OutboxPublisher`` (the MTA's publisher): broker acks first, XACK after.
Run one or more; a killed publisher's unacknowledged entries are reclaimed by another (or
by its restart) after ``reclaim_idle_seconds`` and published again under the same
event_id, which the sinks' ReplacingMergeTree collapses.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from prometheus_client import Counter, Gauge

from kibamail.clients import async_redis_client
from kibamail.outbox import OutboxPublisher
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings

log = logging.getLogger(__name__)

OUTBOX_DEPTH = Gauge("kibamail_api_outbox_depth", "Tracking events waiting for Kafka")
EVENTS_PUBLISHED = Counter("kibamail_api_outbox_published_total", "Tracking events acked by Kafka")


def build_publisher(
    settings: Settings, redis: object, reclaim_idle_seconds: float
) -> OutboxPublisher:
    return OutboxPublisher(
        settings,
        redis,
        streams=[RedisKeys.API_EVENT_OUTBOX],
        group=RedisKeys.API_EVENT_OUTBOX_GROUP,
        reclaim_idle_ms=int(reclaim_idle_seconds * 1000),
        on_depth=OUTBOX_DEPTH.set,
        on_published=EVENTS_PUBLISHED.inc,
    )


async def serve(settings: Settings, reclaim_idle_seconds: float = 30.0) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    redis = async_redis_client(settings)
    try:
        await build_publisher(settings, redis, reclaim_idle_seconds).run(stop)
    finally:
        await redis.aclose()


def run(settings: Settings, reclaim_idle_seconds: float = 30.0) -> None:
    logging.basicConfig(level=logging.INFO)
    log.info("publishing %s to Kafka", RedisKeys.API_EVENT_OUTBOX)
    asyncio.run(serve(settings, reclaim_idle_seconds))
