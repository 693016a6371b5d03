"""Another team's verified domain on every API send path, played by the attacker team:
single send (hot path and route), idempotent send, template, batch, scheduled send, and
the re-checks at hand-over (scheduled release, broadcast edited after launch)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.bootstrap import create_team_with_key
from api.jobs.worker import build_worker
from api.services.broadcast_lifecycle import release_due_broadcasts
from api.services.sending import release_due, scheduled_count, scheduled_key
from api.tests.conftest import SendingTeam
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from testing.submissions import submission_count

pytestmark = pytest.mark.integration
LATER = datetime.now(UTC) + timedelta(days=2)


@pytest.fixture
def victim(api_settings: Settings) -> SendingTeam:
    suffix = uuid.uuid4().hex[:8]
    domain = f"victim-{suffix}.example.com"
    team_id, key = create_team_with_key(
        api_settings, email=f"ceo-{suffix}@example.com", team_name=f"victim {suffix}", domain=domain
    )
    return SendingTeam(team_id, key, domain)


def _email(sender: str, **extra: Any) -> dict[str, Any]:
    return {"from": sender, "to": ["cfo@example.org"], "subject": "Wire", "text": "Now.", **extra}


def _assert_refused(resp: Any, domain: str) -> None:
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == "domain_not_verified" and domain in error["message"]


def _nothing_queued(redis: Any) -> bool:
    return submission_count(redis) == 0 and scheduled_count(redis) == 0


def _run(settings: Settings, job: Any) -> Any:
    async def go() -> Any:
        from kibamail.clients import async_redis_client

        redis = async_redis_client(settings)
        try:
            coroutine: Coroutine[Any, Any, Any] = job(redis)
            return await coroutine
        finally:
            await redis.aclose()

    return asyncio.run(go())


def test_every_send_path_refuses_another_teams_verified_domain(
    client: TestClient, team: SendingTeam, victim: SendingTeam, redis_client: Any
) -> None:
    forged = f"CEO <ceo@{victim.domain}>"
    base = f"/v1/teams/{team.team_id}"
    template = client.post(
        f"{base}/templates", json={"name": "t", "subject": "Hi", "text": "x"}, headers=team.auth
    )
    assert template.status_code == 201, template.text
    attempts = {
        "hot path": _email(forged),
        "idempotent": _email(forged),
        "template": _email(forged, template_id=template.json()["id"]),
        "scheduled": _email(forged, send_at=LATER.isoformat()),
    }
    for name, body in attempts.items():
        headers = (
            {**team.auth, "Idempotency-Key": f"k-{name}"} if name == "idempotent" else team.auth
        )
        _assert_refused(client.post("/v1/emails", json=body, headers=headers), victim.domain)
    own = _email(f"me@{team.domain}")
    batch = client.post("/v1/emails/batch", json=[own, _email(forged)], headers=team.auth)
    _assert_refused(batch, victim.domain)
    assert _nothing_queued(redis_client)
    # The victim itself still sends from its domain.
    assert client.post("/v1/emails", json=_email(forged), headers=victim.auth).status_code == 200


def test_scheduled_email_is_not_released_once_the_team_lost_the_domain(
    client: TestClient, team: SendingTeam, api_settings: Settings, redis_client: Any
) -> None:
    body = _email(f"me@{team.domain}", send_at=LATER.isoformat())
    scheduled = client.post("/v1/emails", json=body, headers=team.auth)
    assert scheduled.status_code == 200 and scheduled.json()["status"] == "scheduled"
    message_id = scheduled.json()["id"]
    domains = client.get(f"/v1/teams/{team.team_id}/domains", headers=team.auth).json()["data"]
    [domain] = [d for d in domains if d["name"] == team.domain]
    removed = client.delete(f"/v1/teams/{team.team_id}/domains/{domain['id']}", headers=team.auth)
    assert removed.status_code == 200

    later = LATER.timestamp() + 60
    assert _run(api_settings, lambda redis: release_due(redis, now=later)) == 0
    assert submission_count(redis_client) == 0
    assert not redis_client.exists(RedisKeys.message_mapping(team.team_id, message_id))
    parked = redis_client.hgetall(scheduled_key(team.team_id, message_id))
    assert parked[b"status"] == b"failed"
    assert (
        team.domain.encode() in parked[b"reason"]
        and redis_client.ttl(scheduled_key(team.team_id, message_id)) > 0
    )
    assert scheduled_count(redis_client) == 0  # not retried forever


def test_broadcast_edited_after_launch_to_another_teams_domain_fails(
    client: TestClient,
    team: SendingTeam,
    victim: SendingTeam,
    api_settings: Settings,
    redis_client: Any,
) -> None:
    base = f"/v1/teams/{team.team_id}"
    lst = client.post(f"{base}/lists", json={"name": "L"}, headers=team.auth).json()["id"]
    csv = "email\n" + "".join(f"c{i}@example.org\n" for i in range(5))
    assert client.post(f"{base}/lists/{lst}/import", content=csv.encode(), headers=team.auth)
    body: dict[str, Any] = {
        "name": "Offer",
        "list_id": lst,
        "from": f"news@{team.domain}",
        "variants": [{"id": "a", "subject": "Hi", "text": "Offer"}],
    }
    made = client.post(f"{base}/broadcasts", json=body, headers=team.auth).json()["id"]
    url = f"{base}/broadcasts/{made}"
    launched = client.post(f"{url}/launch", json={"send_at": LATER.isoformat()}, headers=team.auth)
    assert launched.json()["status"] == "scheduled"
    # Edited after launch (a scheduled broadcast may still be edited): the victim's domain.
    edited = client.put(url, json={**body, "from": f"ceo@{victim.domain}"}, headers=team.auth)
    assert edited.status_code == 200, edited.text

    later = LATER.timestamp() + 60
    assert _run(api_settings, lambda redis: release_due_broadcasts(redis, now=later)) == 1
    worker = build_worker(api_settings, claim_idle_ms=60_000)
    while worker.run_once(block_ms=50):
        pass
    assert submission_count(redis_client) == 0
    shown = client.get(url, headers=team.auth).json()
    assert shown["status"] == "failed"
    progress = shown["progress"]
    # The first refused contact fails the broadcast; the others are skipped, whether the
    # worker ran them one by one or as one batch.
    assert progress["sent"] == 0 and progress["failed"] == 1 and progress["skipped"] == 4
    assert victim.domain in progress["failure_reason"]
