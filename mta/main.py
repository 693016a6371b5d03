"""The MTA process: SMTP listeners + delivery workers + outbox publisher + /metrics.

Health check: TCP connect (or GET /metrics) on ``settings.mta.metrics_port``.
Several processes (or hosts) can run this against the same Redis: they share the
queue through the consumer group and the retry schedule.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from kibamail.settings import Settings

from .config import load_config
from .delivery import DeliveryWorker
from .events import OutboxPublisher

log = logging.getLogger("mta")


async def serve(
    settings: Settings, stop: asyncio.Event, *, listeners: bool = True, delivery: bool = True
) -> None:
    """Run every MTA component until ``stop`` is set."""
    from .redis_pool import mta_redis_client
    from .server import SubmissionServers

    config = load_config(settings.mta.policy_file)
    # Blocking pool: sessions beyond its size wait for a connection, never get a 500.
    redis = mta_redis_client(settings)
    worker = DeliveryWorker(settings, config, redis)
    publisher = OutboxPublisher(settings, redis)
    servers = SubmissionServers(settings, config, redis) if listeners else None
    if servers is not None:
        await servers.start()
    tasks = [asyncio.create_task(publisher.run(stop), name="outbox")]
    if delivery:
        tasks.append(asyncio.create_task(worker.run(stop), name="delivery"))
    try:
        await stop.wait()
    finally:
        if servers is not None:
            await servers.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        await redis.aclose()


def run(settings: Settings, *, delivery: bool = True, listeners: bool = True) -> None:
    """Blocking entry point of `kibamail mta`; stops cleanly on SIGTERM/SIGINT."""
    from prometheus_client import start_http_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # aiosmtpd logs every connection at INFO; keep its warnings only.
    logging.getLogger("mail.log").setLevel(logging.WARNING)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        start_http_server(settings.mta.metrics_port, addr=settings.mta.metrics_host)
        log.info("MTA metrics on %s:%d", settings.mta.metrics_host, settings.mta.metrics_port)
        await serve(settings, stop, delivery=delivery, listeners=listeners)

    try:
        import uvloop  # libuv event loop (ships with uvicorn[standard]): less CPU per message
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
