"""10,000 contacts, worker processes SIGKILLed mid-run: everyone mailed exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.tests.conftest import SendingTeam
from infra.stack import settings_to_env
from kibamail.settings import Settings
from pipelines.contracts import MessageMapping, RedisKeys, deserialize

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

CONTACTS = 10_000


def _worker(settings: Settings) -> subprocess.Popen[bytes]:
    env = {**os.environ, **settings_to_env(settings)}
    return subprocess.Popen(
        [sys.executable, "-m", "kibamail", "api", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_killed_workers_neither_lose_nor_double_send(
    client: TestClient, team: SendingTeam, api_settings: Settings, redis_client: Any
) -> None:
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
    workers = [_worker(api_settings), _worker(api_settings)]
    try:
        launched = client.post(f"{base}/broadcasts/{broadcast}/launch", json={}, headers=team.auth)
        assert launched.status_code == 200, launched.text
        deadline = time.monotonic() + 600
        while redis_client.xlen(RedisKeys.SUBMISSION_STREAM) < 2_000:
            assert time.monotonic() < deadline, "workers made no progress"
            time.sleep(0.05)
        os.kill(workers[0].pid, signal.SIGKILL)  # mid-batch, jobs left pending
        workers[0].wait()
        while redis_client.xlen(RedisKeys.SUBMISSION_STREAM) < 5_000:
            assert time.monotonic() < deadline, "workers made no progress"
            time.sleep(0.05)
        os.kill(workers[1].pid, signal.SIGKILL)
        workers[1].wait()
        workers = [_worker(api_settings), _worker(api_settings)]
        # Pending jobs of the killed workers are reclaimed after the idle timeout (15 s).
        while redis_client.xlen(RedisKeys.SUBMISSION_STREAM) < CONTACTS:
            assert time.monotonic() < deadline, (
                f"only {redis_client.xlen(RedisKeys.SUBMISSION_STREAM)} of {CONTACTS} queued"
            )
            time.sleep(0.2)
        time.sleep(1.0)  # anything extra would show up now
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    entries = redis_client.xrange(RedisKeys.SUBMISSION_STREAM)
    assert len(entries) == CONTACTS
    contacts = set()
    for _, fields in entries:
        meta = fields[b"meta"].decode()
        message_id = meta.split('"message_id":"', 1)[1].split('"', 1)[0]
        mapping = deserialize(
            MessageMapping, redis_client.get(RedisKeys.message_mapping(message_id))
        )
        contacts.add(mapping.contact_id)
    assert len(contacts) == CONTACTS
