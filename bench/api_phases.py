"""``bench.api`` phases that end somewhere other than the HTTP answer.

- pixel: a request counts once its open event is acknowledged by the broker, i.e. the
  ``kibamail api outbox`` publisher moved it from the Redis outbox to Kafka and a
  consumer reads it back from the opens topic;
- fan-out: a broadcast to K contacts counts once every contact's message is in the MTA's
  submission stream (``kibamail api worker`` processes running the per-contact jobs).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from kibamail.contracts import EmailOpenEvent, Topic, deserialize
from kibamail.settings import Settings
from local_stack.services import kibamail_spec
from local_stack.stack import ServiceSpec, Stack
from testing.submissions import submission_count

from .api_load import run_load
from .report import RunMeter


class OpenWatcher(threading.Thread):
    """Notes when each wanted open event shows up in Kafka."""

    def __init__(self, settings: Settings, wanted: set[str]) -> None:
        super().__init__(daemon=True)
        from confluent_kafka import Consumer

        from kibamail.clients import kafka_consumer_config

        self.consumer = Consumer(kafka_consumer_config(f"bench-opens-{time.time_ns()}", settings))
        self.consumer.subscribe([Topic.EMAIL_OPENS.value])
        self.wanted = wanted
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for msg in self.consumer.consume(2000, timeout=0.2):
                if msg.error() is None:
                    event = deserialize(EmailOpenEvent, msg.value() or b"")
                    if event.message_id in self.wanted:
                        self.seen.setdefault(event.message_id, time.perf_counter())
        self.consumer.close()


def pixel_at_broker(
    stack: Stack,
    settings: Settings,
    pids: dict[str, int],
    port: int,
    pixels: list[bytes],
    message_ids: list[str],
    connections: int,
    timeout: float,
) -> dict[str, Any]:
    stack.start(portless(kibamail_spec(settings, "api-outbox", ["api", "outbox"], 0)))
    wanted = set(message_ids)
    watcher = OpenWatcher(settings, wanted)
    watcher.start()
    meter = RunMeter()
    for name, pid in {**pids, "outbox_publisher": stack.running_pid("api-outbox")}.items():
        meter.add(name, pid, children=name != "redis")
    meter.add_self("load_generator_and_consumer")
    meter.start()
    started = time.perf_counter()
    load = asyncio.run(run_load(port, pixels, connections))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(watcher.seen) < len(wanted):
        time.sleep(0.1)
    report = meter.stop()
    watcher.stop.set()
    watcher.join(5)
    stack.stop("api-outbox")
    acked = len(watcher.seen)
    last = max(watcher.seen.values(), default=started)
    return {
        "http": load.summary(),
        "broker_acknowledged": acked,
        "unaccounted": len(wanted) - acked,
        "complete": acked == len(wanted) and load.ok == len(pixels),
        "acked_per_s": round(acked / max(last - started, 1e-9), 1),
        **report,
        "cpu_ms_per_acked": meter.cpu_ms_per(acked),
    }


def portless(spec: ServiceSpec) -> ServiceSpec:
    """Workers and the outbox publisher listen on no port: healthy once started."""
    spec.health = lambda: True
    spec.ports = []
    return spec


def fanout_to_queue(
    stack: Stack,
    settings: Settings,
    workers: int,
    fanout: Any,
    contacts: int,
    redis_pid: int,
    timeout: float,
) -> dict[str, Any]:
    """``fanout`` enqueues the broadcast; done when ``contacts`` messages were queued."""
    from kibamail.clients import redis_client

    redis = redis_client(settings)
    before = submission_count(redis)
    names = []
    for i in range(workers):
        name = f"api-worker-{i}"
        stack.start(portless(kibamail_spec(settings, name, ["api", "worker"], 0)))
        names.append(name)
    meter = RunMeter()
    for name in names:
        meter.add(name, stack.running_pid(name))
    meter.add("redis", redis_pid, children=False)
    meter.add_self("bench_process")
    meter.start()
    started = time.perf_counter()
    enqueue = fanout()
    enqueued_seconds = time.perf_counter() - started
    deadline = time.monotonic() + timeout
    queued = 0
    while time.monotonic() < deadline:
        queued = submission_count(redis) - before
        if queued >= contacts:
            break
        time.sleep(0.1)
    seconds = time.perf_counter() - started
    report = meter.stop()
    for name in names:
        stack.stop(name)
    redis.close()
    return {
        **enqueue,
        "job_enqueue_seconds": round(enqueued_seconds, 2),
        "messages_queued": queued,
        "unaccounted": contacts - queued,
        "complete": queued == contacts,
        "seconds_to_all_queued": round(seconds, 2),
        "api_workers": workers,
        **report,
    }


def prepare_fanout(settings: Any, team_id: str, domain: str, contacts: int) -> Any:
    """Creates the list, contacts and broadcast; returns the call that enqueues its fan-out."""
    from sqlalchemy import insert

    from api.db import make_engine, make_sessionmaker, new_id, utcnow
    from api.jobs.broadcast_fanout import BroadcastJobs, progress_key
    from api.jobs.queue import job_stream
    from api.models import Broadcast, Contact, ContactList
    from api.services.security import Signer
    from kibamail.clients import redis_client
    from kibamail.redis_keys import slot_group

    engine = make_engine(settings.database.url)
    sessions = make_sessionmaker(engine)
    with sessions.begin() as db:
        contact_list = ContactList(team_id=team_id, name="bench")
        db.add(contact_list)
        db.flush()
        now = utcnow()
        rows = [
            {
                "id": new_id(),
                "team_id": team_id,
                "list_id": contact_list.id,
                "email": f"c{i}@example.org",
                "first_name": "",
                "last_name": "",
                "fields": {},
                "status": "subscribed",
                "created_at": now,
            }
            for i in range(contacts)
        ]
        db.execute(insert(Contact), rows)
        broadcast = Broadcast(
            team_id=team_id,
            name="bench",
            list_id=contact_list.id,
            from_address=f"news@{domain}",
            variants=[{"id": "a", "subject": "s", "text": "t"}],
            status="sending",
        )
        db.add(broadcast)
        db.flush()
        broadcast_id = broadcast.id
    redis = redis_client(settings)
    stream = job_stream(slot_group(team_id))
    redis.delete(stream)  # before the workers create their consumer group
    redis.hset(progress_key(team_id, broadcast_id), "status", "sending")

    def enqueue() -> dict[str, Any]:
        jobs = BroadcastJobs(settings, sessions, redis, Signer(settings.api.secret_key))
        jobs.send_broadcast({"broadcast_id": broadcast_id, "team_id": team_id})
        queued = redis.xlen(stream)
        redis.close()
        engine.dispose()
        return {"contacts": contacts, "jobs_enqueued": queued}

    return enqueue
