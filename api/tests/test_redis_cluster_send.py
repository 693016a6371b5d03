"""The API's send paths on a real 3-master Redis Cluster (testing.redis_cluster).

Every multi-key script and MULTI of a send keeps its keys in the team's slot
(kibamail.redis_keys), so the fast path, the FastAPI route with idempotency, the per-key
rate limit, suppression, a team pause, scheduled sends and the broadcast fan-out run
unchanged on a cluster; a CROSSSLOT error would surface as a 500 or a failed job here.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from redis.crc import key_slot

from api.app import create_app
from api.bootstrap import create_team_with_key
from api.jobs.broadcast_fanout import SEND_BROADCAST
from api.jobs.queue import enqueue, queued_jobs
from api.jobs.worker import build_worker
from api.services.sending import release_due, scheduled_count
from api.tests.conftest import RecordingProducer, SendingTeam
from kibamail.contracts import OutboundMessage
from kibamail.redis_keys import RedisKeys, slot_group
from kibamail.settings import Settings
from testing.redis_cluster import RedisClusterHandle
from testing.submissions import submission_count, submission_entries

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster_settings(api_settings: Settings, redis_cluster: RedisClusterHandle) -> Settings:
    api = api_settings.api.model_copy(update={"rate_limit_per_second": 1, "rate_limit_burst": 6})
    return api_settings.model_copy(update={"redis": redis_cluster.settings, "api": api})


@pytest.fixture
def cluster(redis_cluster: RedisClusterHandle) -> Iterator[Any]:
    redis_cluster.flush()
    client = redis_cluster.client()
    yield client
    client.close()


@pytest.fixture
def app(cluster_settings: Settings, cluster: Any) -> Iterator[TestClient]:
    app = create_app(cluster_settings, producer=RecordingProducer(), run_scheduler=False)
    with TestClient(app) as client:
        yield client


def _team(settings: Settings) -> SendingTeam:
    suffix = uuid.uuid4().hex[:8]
    domain = f"c{suffix}.example.com"
    team_id, key = create_team_with_key(
        settings, email=f"owner-{suffix}@example.com", team_name=f"c {suffix}", domain=domain
    )
    return SendingTeam(team_id, key, domain)


def _email(team: SendingTeam, to: str = "bob@example.org", **extra: Any) -> dict[str, Any]:
    return {"from": f"a@{team.domain}", "to": to, "subject": "s", "text": "t", **extra}


def test_both_send_paths_with_idempotency_run_on_the_cluster(
    app: TestClient, cluster_settings: Settings, cluster: Any, fastapi_sends: list[str]
) -> None:
    team = _team(cluster_settings)
    headers = {**team.auth, "Idempotency-Key": "order-1"}
    first = app.post("/v1/emails", json=_email(team), headers=headers)  # FastAPI: loads the key
    replay = app.post("/v1/emails", json=_email(team), headers=headers)  # fast path
    assert first.status_code == replay.status_code == 200, first.text
    assert replay.json()["id"] == first.json()["id"]
    fast = app.post("/v1/emails", json=_email(team, "carol@example.org"), headers=team.auth)
    fast_again = app.post(
        "/v1/emails",
        json=_email(team, "dave@example.org"),
        headers={**headers, "Idempotency-Key": "o2"},
    )
    fast_replay = app.post(
        "/v1/emails",
        json=_email(team, "dave@example.org"),
        headers={**headers, "Idempotency-Key": "o2"},
    )
    assert fast.status_code == fast_again.status_code == 200, fast.text
    assert fast_replay.json()["id"] == fast_again.json()["id"]
    assert fastapi_sends == ["fastapi"]  # everything after the first request took the fast path
    queued = [OutboundMessage.from_stream_fields(f) for _, f in submission_entries(cluster)]
    assert sorted(m.recipients[0] for m in queued) == [
        "bob@example.org",
        "carol@example.org",
        "dave@example.org",
    ]  # nothing enqueued twice
    stream = RedisKeys.team_submission_stream(team.team_id)
    assert cluster.xlen(stream) == 3  # all in the team's group stream
    for message in queued:
        assert cluster.exists(RedisKeys.message_mapping(team.team_id, message.message_id))


def test_rate_limit_suppression_and_pause_refuse_on_the_cluster(
    app: TestClient, cluster_settings: Settings, cluster: Any
) -> None:
    team = _team(cluster_settings)
    cluster.sadd(RedisKeys.suppression(team.team_id), "gone@example.org")
    suppressed = app.post("/v1/emails", json=_email(team, "gone@example.org"), headers=team.auth)
    assert suppressed.status_code == 422
    assert suppressed.json()["error"]["code"] == "recipient_suppressed"
    cluster.set(RedisKeys.team_paused(team.team_id), '{"reason": "complaints"}')
    paused = app.post("/v1/emails", json=_email(team), headers=team.auth)
    assert paused.status_code == 429 and paused.json()["error"]["code"] == "team_paused"
    cluster.delete(RedisKeys.team_paused(team.team_id))
    statuses = [app.post("/v1/emails", json=_email(team), headers=team.auth) for _ in range(8)]
    codes = [r.status_code for r in statuses]
    assert 429 in codes and codes.index(429) >= 1, codes  # the burst of 6, then refused
    limited = statuses[codes.index(429)]
    assert "Retry-After" in limited.headers
    assert submission_count(cluster) == codes.count(200)


def test_broadcast_fans_out_once_per_contact_on_the_cluster(
    app: TestClient, cluster_settings: Settings, cluster: Any
) -> None:
    team = _team(cluster_settings)
    base = f"/v1/teams/{team.team_id}"
    lst = app.post(f"{base}/lists", json={"name": "L"}, headers=team.auth).json()["id"]
    csv = "email,first_name\n" + "".join(f"c{i}@example.org,N{i}\n" for i in range(12))
    imported = app.post(f"{base}/lists/{lst}/import", content=csv.encode(), headers=team.auth)
    assert imported.json()["imported"] == 12
    body = {
        "name": "Launch",
        "list_id": lst,
        "from": f"news@{team.domain}",
        "variants": [
            {"id": "a", "subject": "Hi {{ first_name }}", "text": "{{ unsubscribe_url }}"}
        ],
    }
    broadcast = app.post(f"{base}/broadcasts", json=body, headers=team.auth).json()["id"]
    launched = app.post(f"{base}/broadcasts/{broadcast}/launch", json={}, headers=team.auth)
    assert launched.status_code == 200, launched.text
    _drain(cluster_settings)
    # A retried fan-out job (a crash before its XACK) mails nobody twice.
    job = {"broadcast_id": broadcast, "team_id": team.team_id}
    enqueue(cluster, SEND_BROADCAST, job, slot_group(team.team_id))
    _drain(cluster_settings)
    recipients = [
        OutboundMessage.from_stream_fields(f).recipients[0] for _, f in submission_entries(cluster)
    ]
    assert sorted(recipients) == sorted(f"c{i}@example.org" for i in range(12))
    assert queued_jobs(cluster) == 0
    progress = app.get(f"{base}/broadcasts/{broadcast}", headers=team.auth).json()
    assert progress["status"] in {"sending", "sent"}


def _drain(settings: Settings) -> None:
    worker = build_worker(settings, claim_idle_ms=60_000)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not worker.run_once(block_ms=0) and not worker.run_once(block_ms=0):
            return
    raise AssertionError("the job queue did not drain")


def test_another_teams_ids_and_keys_are_refused_on_the_cluster(
    app: TestClient, cluster_settings: Settings, cluster: Any
) -> None:
    owner, intruder = _team(cluster_settings), _team(cluster_settings)
    later = "2099-01-01T00:00:00Z"
    scheduled = app.post("/v1/emails", json=_email(owner, send_at=later), headers=owner.auth)
    assert scheduled.status_code == 200 and scheduled.json()["status"] == "scheduled"
    message_id = scheduled.json()["id"]
    cancel = app.post(f"/v1/emails/{message_id}/cancel", headers=intruder.auth)
    assert cancel.status_code == 404
    peek = app.get(f"/v1/teams/{owner.team_id}/domains", headers=intruder.auth)
    assert peek.status_code == 404
    forged = app.post("/v1/emails", json=_email(owner), headers={"Authorization": "Bearer km_x"})
    assert forged.status_code == 401
    assert scheduled_count(cluster) == 1 and submission_count(cluster) == 0  # nothing changed


def test_keys_of_many_teams_spread_over_every_master_without_crossslot(
    app: TestClient, cluster_settings: Settings, redis_cluster: RedisClusterHandle, cluster: Any
) -> None:
    teams = [_team(cluster_settings) for _ in range(8)]
    for team in teams:
        assert app.post("/v1/emails", json=_email(team), headers=team.auth).status_code == 200
    masters = {
        redis_cluster.master_of_slot(key_slot(RedisKeys.suppression(t.team_id).encode()))
        for t in teams
    }
    streams = {
        redis_cluster.master_of_slot(key_slot(s.encode())) for s in RedisKeys.submission_streams()
    }
    assert streams == set(redis_cluster.ports)  # the 16 groups cover every master
    assert len(masters) >= 2
    assert all(size > 0 for size in redis_cluster.keys_per_master().values())
    assert submission_count(cluster) == len(teams)


def test_scheduled_sends_release_on_the_cluster(
    app: TestClient, cluster_settings: Settings, redis_cluster: RedisClusterHandle, cluster: Any
) -> None:
    import asyncio

    from kibamail.clients import async_redis_client

    team = _team(cluster_settings)
    later = "2099-01-01T00:00:00Z"
    made = app.post("/v1/emails", json=_email(team, send_at=later), headers=team.auth)
    assert made.json()["status"] == "scheduled"

    async def release() -> int:
        redis = async_redis_client(cluster_settings)
        try:
            return await release_due(redis, now=4102444800 + 60)
        finally:
            await redis.aclose()

    assert asyncio.run(release()) == 1
    assert scheduled_count(cluster) == 0 and submission_count(cluster) == 1
