"""10,000 contacts, broadcast workers SIGKILLed mid-run, delivered end to end by the real MTA
process to the test sink: every contact receives exactly one message."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.jobs.broadcast_fanout import progress_key
from api.tests.conftest import SendingTeam
from kibamail.contracts import MessageMapping, deserialize
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings, settings_to_env
from local_stack.services import kibamail_spec
from local_stack.stack import Stack
from mta.tests.helpers import with_policy, write_policy
from testing.testnet import DnsServer, SinkConfig, SinkServer, Zone

# Took 173 s in a clean-clone CI run, 392-518 s at load averages 7-14 (dead workers' jobs wait
# 15 s to be reclaimed); the timeout leaves room for that.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

CONTACTS = 10_000


@pytest.fixture
def sink(api_settings: Settings) -> Iterator[SinkServer]:
    server = SinkServer(port=api_settings.mta.delivery_port, config=SinkConfig(seed=11)).start()
    yield server
    server.stop()


@pytest.fixture
def dns_server(api_settings: Settings) -> Iterator[DnsServer]:
    server = DnsServer(port=api_settings.mta.dns_port, zone=Zone()).start()
    yield server
    server.stop()


@pytest.fixture
def mta_process(
    api_settings: Settings,
    test_stack: Stack,
    kafka_service: str,
    redis_client: Any,
    sink: SinkServer,
    dns_server: DnsServer,
    tmp_path: Path,
) -> Iterator[Settings]:
    """`kibamail mta` as a real process, delivering to the sink through the loopback DNS."""
    settings = with_policy(api_settings, write_policy(tmp_path / "policies.toml"))
    spec = kibamail_spec(settings, "mta", ["mta"], health_port=settings.mta.metrics_port)
    test_stack.start(spec)
    yield settings
    test_stack.stop("mta")


def _worker(settings: Settings) -> subprocess.Popen[bytes]:
    env = {**os.environ, **settings_to_env(settings)}
    return subprocess.Popen(
        [sys.executable, "-m", "console", "api", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait(check: Callable[[], bool], deadline: float, what: Callable[[], str]) -> None:
    while not check():
        assert time.monotonic() < deadline, what()
        time.sleep(0.1)


def _launch(client: TestClient, team: SendingTeam) -> str:
    base = f"/v1/teams/{team.team_id}"
    lst = client.post(f"{base}/lists", json={"name": "Big"}, headers=team.auth).json()["id"]
    csv = "email\n" + "".join(f"k{i}@example.org\n" for i in range(CONTACTS))
    imported = client.post(f"{base}/lists/{lst}/import", content=csv.encode(), headers=team.auth)
    assert imported.json()["imported"] == CONTACTS
    body = {
        "name": "Crash",
        "list_id": lst,
        "from": f"news@{team.domain}",
        "variants": [{"subject": "Hi", "text": "Hello {{ email }}"}],
    }
    broadcast = client.post(f"{base}/broadcasts", json=body, headers=team.auth).json()["id"]
    launched = client.post(f"{base}/broadcasts/{broadcast}/launch", json={}, headers=team.auth)
    assert launched.status_code == 200, launched.text
    return str(broadcast)


def test_killed_workers_neither_lose_nor_double_send_to_the_sink(
    client: TestClient,
    team: SendingTeam,
    api_settings: Settings,
    redis_client: Any,
    mta_process: Settings,
    sink: SinkServer,
) -> None:
    workers = [_worker(api_settings), _worker(api_settings)]
    deadline = time.monotonic() + 600
    try:
        broadcast = _launch(client, team)

        def sent() -> int:
            return int(redis_client.hget(progress_key(team.team_id, broadcast), "sent") or 0)

        _wait(lambda: sent() >= 2_000, deadline, lambda: "workers made no progress")
        os.kill(workers[0].pid, signal.SIGKILL)  # mid-batch: its jobs are left pending
        workers[0].wait()
        _wait(lambda: sent() >= 5_000, deadline, lambda: "workers made no progress")
        os.kill(workers[1].pid, signal.SIGKILL)
        workers[1].wait()
        assert sent() < CONTACTS, "the broadcast finished before the kills; nothing was tested"
        workers = [_worker(api_settings), _worker(api_settings)]
        # Pending jobs of the killed workers are reclaimed after the idle timeout (15 s).
        _wait(
            lambda: len(sink.delivered_counts()) >= CONTACTS,
            deadline,
            lambda: f"{len(sink.delivered_counts())} of {CONTACTS} at the sink; {sent()} queued",
        )
        time.sleep(2.0)  # anything extra (a double send) would arrive now
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    delivered = [r for r in sink.records if r.answer_code == 250]
    by_message_id = Counter(r.message_id for r in delivered)
    by_recipient = Counter(r.rcpt.lower() for r in delivered)
    assert len(by_message_id) == CONTACTS and set(by_message_id.values()) == {1}
    assert by_recipient == Counter({f"k{i}@example.org": 1 for i in range(CONTACTS)})
    contacts = set()
    for message_id in by_message_id:
        raw = redis_client.get(RedisKeys.message_mapping(team.team_id, message_id))
        mapping = deserialize(MessageMapping, raw)
        assert mapping.broadcast_id == broadcast
        contacts.add(mapping.contact_id)
    assert len(contacts) == CONTACTS
    assert int(redis_client.hget(progress_key(team.team_id, broadcast), "sent")) == CONTACTS
