"""No fire-and-forget tracking: the API process and the outbox publisher are SIGKILLed mid-run,
and every open or click the API answered still reaches Kafka, once by event_id.

The API (`kibamail api`, the fast path serves the pixel and the redirect) and the publisher
(`kibamail api outbox`) run as real processes on the harness's Redis and Tansu broker.
Hits in flight when the API dies were never answered and are not counted. A publisher
killed between Kafka's ack and its XACK republishes the same entries (same event_id); the
sinks' ReplacingMergeTree collapses those, so the assertion is one event_id per hit.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer

from api.services.rendering import CLICK_PURPOSE, OPEN_PURPOSE
from api.services.security import Signer
from kibamail.clients import kafka_consumer_config
from kibamail.contracts import EmailClickEvent, EmailOpenEvent, Topic, deserialize
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings, settings_to_env
from local_stack.services import kibamail_spec
from local_stack.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

HITS = 4_000
CONCURRENCY = 32


def _publisher(settings: Settings) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "console", "api", "outbox", "--reclaim-idle-seconds", "1"],
        env={**os.environ, **settings_to_env(settings)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture
def api_process(
    api_settings: Settings, test_stack: Stack, kafka_service: str, redis_client: Any
) -> Iterator[Any]:
    spec = kibamail_spec(api_settings, "api", ["api"], api_settings.api.port, "/healthz")
    test_stack.start(spec)
    yield spec
    test_stack.stop("api")


def _paths(signer: Signer, run: str) -> list[tuple[str, str]]:
    """(message id, path) per hit: every other hit a click, each its own message."""
    paths = []
    for index in range(HITS):
        message_id = f"{run}-{index}@crash.test"
        if index % 2:
            token = signer.dumps(CLICK_PURPOSE, [message_id, "team-crash", "https://x.test/", 0])
            paths.append((message_id, f"/t/c/{token}"))
        else:
            paths.append((message_id, f"/t/o/{signer.dumps(OPEN_PURPOSE, [message_id, 'tc'])}"))
    return paths


async def _hit(
    base: str, paths: list[tuple[str, str]], answered: set[str], kill_at: int, kill: Any
) -> None:
    """Load every path from CONCURRENCY tasks; call kill() once kill_at hits were answered."""
    queue = iter(paths)
    killed = False

    async def task(client: httpx.AsyncClient) -> None:
        nonlocal killed
        for message_id, path in queue:
            try:
                resp = await client.get(path)
            except httpx.HTTPError:
                continue  # the API died with it in flight: never answered
            if resp.status_code in (200, 302):
                answered.add(message_id)
            if not killed and len(answered) >= kill_at:
                killed = True
                kill()

    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        await asyncio.gather(*(task(client) for _ in range(CONCURRENCY)))


def _events_on_kafka(settings: Settings, run: str, wanted: set[str]) -> dict[str, list[str]]:
    """message id -> event ids seen on the opens/clicks topics for this run's messages."""
    consumer = Consumer(kafka_consumer_config(f"crash-{uuid.uuid4().hex}", settings))
    consumer.subscribe([Topic.EMAIL_OPENS.value, Topic.EMAIL_CLICKS.value])
    seen: dict[str, list[str]] = defaultdict(list)
    deadline = time.monotonic() + 180
    settle_until = None
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                model = (
                    EmailClickEvent if msg.topic() == Topic.EMAIL_CLICKS.value else EmailOpenEvent
                )
                event = deserialize(model, msg.value() or b"")
                if event.message_id.startswith(run):
                    seen[event.message_id].append(event.event_id)
            if settle_until is None and wanted <= set(seen):
                settle_until = time.monotonic() + 3  # republished duplicates would come now
            if settle_until is not None and time.monotonic() > settle_until:
                break
    finally:
        consumer.close()
    return seen


def _kill_mid_batch(
    publisher: subprocess.Popen[bytes], redis_client: Any, answered: set[str], done: threading.Event
) -> list[int]:
    """Watch the outbox group; SIGKILL the publisher while it holds read-but-unacked entries
    (a batch between XREADGROUP and XACK) once a quarter of the hits were answered.
    Returns [entries pending at the kill] (empty if it never caught one before ``done``)."""
    caught: list[int] = []

    def watch() -> None:
        while not done.is_set():
            if len(answered) >= HITS // 4:
                try:
                    pending = redis_client.xpending(
                        RedisKeys.API_EVENT_OUTBOX, RedisKeys.API_EVENT_OUTBOX_GROUP
                    )["pending"]
                except Exception:
                    pending = 0
                if pending:
                    _kill(publisher)
                    caught.append(pending)
                    return
            time.sleep(0.001)

    threading.Thread(target=watch, daemon=True).start()
    return caught


def test_killed_api_and_publisher_lose_no_answered_hit(
    api_settings: Settings, test_stack: Stack, api_process: Any, redis_client: Any
) -> None:
    run = uuid.uuid4().hex[:12]
    paths = _paths(Signer(api_settings.api.secret_key), run)
    base = f"http://127.0.0.1:{api_settings.api.port}"
    answered: set[str] = set()
    publisher = _publisher(api_settings)
    phase_one = threading.Event()
    try:
        caught = _kill_mid_batch(publisher, redis_client, answered, phase_one)
        half = HITS // 2
        asyncio.run(_hit(base, paths[: half + 500], answered, half, lambda: test_stack.kill("api")))
        phase_one.set()
        _kill(publisher)  # if the watcher never caught a batch in flight
        assert caught, "the publisher was never caught with a batch in flight"
        assert len(answered) < half + 500, "every hit was answered: the kill came too late"
        before_restart = len(answered)
        test_stack.start(api_process)
        publisher = _publisher(api_settings)  # reclaims the dead one's batch after 1 s idle
        asyncio.run(_hit(base, paths[half + 500 :], answered, HITS + 1, lambda: None))
        assert len(answered) > before_restart
        seen = _events_on_kafka(api_settings, run, answered)
    finally:
        phase_one.set()
        _kill(publisher)
    missing = answered - set(seen)
    assert not missing, f"{len(missing)} answered hits never reached Kafka: {sorted(missing)[:3]}"
    several_ids = {m: ids for m, ids in seen.items() if len(set(ids)) != 1}
    assert not several_ids, f"hits under several event ids: {list(several_ids.items())[:3]}"
    assert redis_client.xlen(RedisKeys.API_EVENT_OUTBOX) == 0
