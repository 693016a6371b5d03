"""Forever-failing jobs: bounded retries with backoff, then the dead-letter stream with the
reason, counted as failed in broadcast progress (real Redis)."""

from __future__ import annotations

import contextlib
import itertools
import time
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from api.jobs.queue import (
    JOB_GROUP,
    Worker,
    dead_letter_stream,
    delayed_jobs,
    enqueue,
    job_stream,
)
from api.jobs.worker import build_worker
from api.tests.conftest import SendingTeam
from kibamail.contracts import OutboundMessage
from kibamail.redis_keys import SLOT_GROUPS
from kibamail.settings import Settings
from testing.submissions import submission_entries

pytestmark = pytest.mark.integration

GROUP, OTHER_GROUP = 3, 11  # the slot groups the generic jobs here are queued to


class WorkerKilled(BaseException):
    """Stands in for SIGKILL in the middle of a handler: nothing after it runs."""


def _run_until_quiet(worker: Worker, limit_seconds: float = 20) -> None:
    deadline = time.monotonic() + limit_seconds
    while time.monotonic() < deadline:
        handled = worker.run_once(block_ms=20)
        if handled == 0 and worker.delayed_count() == 0:
            return
        if handled == 0:
            time.sleep(0.01)
    raise AssertionError("the job queue did not settle")


def _dead_letters(redis_client: Any) -> list[dict[str, Any]]:
    return [
        {
            "kind": fields[b"kind"].decode(),
            "attempts": int(fields[b"attempts"]),
            **orjson.loads(fields[b"envelope"]),
        }
        for group in range(SLOT_GROUPS)
        for _, fields in redis_client.xrange(dead_letter_stream(group))
    ]


def _nothing_left(redis_client: Any) -> None:
    for group in range(SLOT_GROUPS):
        assert redis_client.xpending(job_stream(group), JOB_GROUP)["pending"] == 0
        assert redis_client.xlen(job_stream(group)) == 0
        assert redis_client.zcard(delayed_jobs(group)) == 0


def test_failing_job_is_retried_with_backoff_then_dead_lettered(redis_client: Any) -> None:
    calls: list[float] = []
    done: list[dict[str, Any]] = []

    def always_fails(payload: dict[str, Any]) -> None:
        calls.append(time.monotonic())
        raise RuntimeError(f"cannot render {payload['n']}")

    worker = Worker(
        redis_client,
        {"poison": always_fails, "fine": done.append},
        max_attempts=4,
        backoff_seconds=0.05,
    )
    enqueue(redis_client, "poison", {"n": 7}, GROUP)
    enqueue(redis_client, "fine", {"n": 1}, OTHER_GROUP)  # one worker serves every group
    _run_until_quiet(worker)
    assert done == [{"n": 1}]
    assert len(calls) == 4
    gaps = [later - earlier for earlier, later in itertools.pairwise(calls)]
    assert all(gap >= 0.05 * 2**i * 0.9 for i, gap in enumerate(gaps)), gaps  # backoff doubles
    [dead] = _dead_letters(redis_client)
    assert dead["kind"] == "poison" and dead["attempts"] == 4
    assert dead["reason"] == "RuntimeError: cannot render 7"
    assert orjson.loads(dead["payload"]) == {"n": 7}
    _nothing_left(redis_client)


def test_a_batch_handler_gets_the_jobs_read_together_and_only_failures_retry(
    redis_client: Any,
) -> None:
    calls: list[list[int]] = []

    def odd_ones_fail(payloads: list[dict[str, Any]]) -> list[Exception | None]:
        calls.append([p["n"] for p in payloads])
        return [RuntimeError(f"odd {p['n']}") if p["n"] % 2 else None for p in payloads]

    worker = Worker(
        redis_client,
        {},
        batch_handlers={"many": odd_ones_fail},
        max_attempts=2,
        backoff_seconds=0.01,
    )
    for n in range(6):
        enqueue(redis_client, "many", {"n": n}, GROUP)
    redis_client.xadd(job_stream(GROUP), {"kind": "many", "payload": b"[1, 2]"})
    _run_until_quiet(worker)
    assert calls[0] == [0, 1, 2, 3, 4, 5]  # one call for the six read together
    assert sorted(n for call in calls[1:] for n in call) == [1, 3, 5]  # retried alone
    dead = _dead_letters(redis_client)
    assert sorted(d["reason"] for d in dead) == [
        "PermanentJobError: undecodable payload: not a JSON object",
        "RuntimeError: odd 1",
        "RuntimeError: odd 3",
        "RuntimeError: odd 5",
    ]
    _nothing_left(redis_client)


def test_undecodable_and_unroutable_jobs_are_dead_lettered_at_once(redis_client: Any) -> None:
    worker = Worker(redis_client, {"fine": lambda payload: None}, backoff_seconds=0.01)
    redis_client.xadd(job_stream(GROUP), {"kind": "fine", "payload": b"{not json"})
    enqueue(redis_client, "nobody-handles-this", {"x": 1}, GROUP)
    _run_until_quiet(worker)
    reasons = sorted(d["reason"] for d in _dead_letters(redis_client))
    assert len(reasons) == 2 and all(d["attempts"] == 1 for d in _dead_letters(redis_client))
    assert "no handler for job kind 'nobody-handles-this'" in reasons[0]
    assert "undecodable payload" in reasons[1]
    _nothing_left(redis_client)


def test_a_job_that_kills_its_worker_is_dead_lettered_after_bounded_reclaims(
    redis_client: Any,
) -> None:
    deaths = 0

    def crashes(payload: dict[str, Any]) -> None:
        nonlocal deaths
        deaths += 1
        raise WorkerKilled

    enqueue(redis_client, "crash", {"n": 1}, GROUP)
    deadline = time.monotonic() + 20
    while not _dead_letters(redis_client) and time.monotonic() < deadline:
        worker = Worker(redis_client, {"crash": crashes}, claim_idle_ms=1, max_attempts=3)
        time.sleep(0.005)
        with contextlib.suppress(WorkerKilled):
            worker.run_once(block_ms=10)
    [dead] = _dead_letters(redis_client)
    assert deaths == 3 and dead["attempts"] == 3 and "worker died" in dead["reason"]
    _nothing_left(redis_client)


def test_poisoned_contact_counts_as_failed_and_the_broadcast_finishes(
    client: TestClient, team: SendingTeam, api_settings: Settings, redis_client: Any
) -> None:
    base = f"/v1/teams/{team.team_id}"
    client.post(f"{base}/fields", json={"name": "plan"}, headers=team.auth)
    lst = client.post(f"{base}/lists", json={"name": "P"}, headers=team.auth).json()["id"]
    for i, fields in enumerate([{"plan": "pro"}, {}, {"plan": "free"}]):
        made = client.post(
            f"{base}/lists/{lst}/contacts",
            json={"email": f"p{i}@example.org", "fields": fields},
            headers=team.auth,
        )
        assert made.status_code == 201, made.text
    body = {
        "name": "Plans",
        "list_id": lst,
        "from": f"news@{team.domain}",
        "variants": [{"id": "a", "subject": "Your {{ plan }} plan", "text": "Hi"}],
    }
    broadcast = client.post(f"{base}/broadcasts", json=body, headers=team.auth).json()["id"]
    url = f"{base}/broadcasts/{broadcast}"
    assert client.post(f"{url}/launch", json={}, headers=team.auth).status_code == 200
    _run_until_quiet(build_worker(api_settings, max_attempts=3, backoff_seconds=0.02))
    sent = [
        OutboundMessage.from_stream_fields(f).recipients[0]
        for _, f in submission_entries(redis_client)
    ]
    assert sorted(sent) == ["p0@example.org", "p2@example.org"]
    [dead] = _dead_letters(redis_client)
    assert dead["attempts"] == 3 and "plan" in dead["reason"] and "undefined" in dead["reason"]
    assert orjson.loads(dead["payload"])["email"] == "p1@example.org"
    shown = client.get(url, headers=team.auth).json()
    assert shown["progress"]["failed"] == 1 and shown["progress"]["sent"] == 2
    assert shown["progress"]["pending"] == 0 and shown["status"] == "sent"
    _nothing_left(redis_client)
