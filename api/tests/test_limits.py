"""Per-API-key rate limits with RateLimit-* headers; scheduled broadcasts start on time."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio
from fastapi.testclient import TestClient

from api.app import create_app
from api.jobs.broadcast_fanout import SEND_BROADCAST
from api.jobs.queue import job_stream, queued_jobs
from api.services.broadcast_lifecycle import release_due_broadcasts
from api.tests.conftest import RecordingProducer, SendingTeam
from kibamail.redis_keys import slot_group
from kibamail.settings import Settings
from testing.submissions import submission_count

pytestmark = pytest.mark.integration


def test_rate_limit_comes_from_settings_answers_429_with_headers_and_refills(
    api_settings: Settings, team: SendingTeam, redis_client: Any
) -> None:
    limits = api_settings.api.model_copy(update={"rate_limit_per_second": 1, "rate_limit_burst": 3})
    app = create_app(
        api_settings.model_copy(update={"api": limits}),
        producer=RecordingProducer(),
        run_scheduler=False,
    )
    body = {"from": f"a@{team.domain}", "to": "b@example.org", "subject": "s", "text": "t"}
    with TestClient(app) as client:
        statuses = []
        for _ in range(10):
            statuses.append(client.post("/v1/emails", json=body, headers=team.auth))
            if statuses[-1].status_code == 429:
                break
        time.sleep(1.2)  # one token back at 1/s
        refilled = client.post("/v1/emails", json=body, headers=team.auth)
    codes = [r.status_code for r in statuses]
    assert codes[:3] == [200, 200, 200] and codes[-1] == 429, codes
    assert [r.headers["RateLimit-Remaining"] for r in statuses[:3]] == ["2", "1", "0"]
    limited = statuses[-1]
    assert limited.headers["RateLimit-Limit"] == "3"
    assert limited.headers["RateLimit-Remaining"] == "0"
    assert limited.headers["Retry-After"] == "1"
    assert limited.json()["error"]["code"] == "rate_limited"
    assert refilled.status_code == 200
    assert submission_count(redis_client) == codes.count(200) + 1


def test_default_limits_are_the_settings_defaults(
    client: TestClient, api_settings: Settings, team: SendingTeam
) -> None:
    body = {"from": f"a@{team.domain}", "to": "b@example.org", "subject": "s", "text": "t"}
    sent = client.post("/v1/emails", json=body, headers=team.auth)
    assert sent.headers["RateLimit-Limit"] == str(api_settings.api.rate_limit_burst)
    assert int(sent.headers["RateLimit-Remaining"]) == api_settings.api.rate_limit_burst - 1


def test_scheduled_broadcast_is_released_once_when_due(
    client: TestClient, team: SendingTeam, api_settings: Settings, redis_client: Any
) -> None:
    base = f"/v1/teams/{team.team_id}"
    lst = client.post(f"{base}/lists", json={"name": "S"}, headers=team.auth).json()["id"]
    body = {
        "name": "s",
        "list_id": lst,
        "from": f"n@{team.domain}",
        "variants": [{"subject": "s", "text": "t"}],
    }
    broadcast = client.post(f"{base}/broadcasts", json=body, headers=team.auth).json()["id"]
    later = "2999-01-01T00:00:00Z"
    launched = client.post(
        f"{base}/broadcasts/{broadcast}/launch", json={"send_at": later}, headers=team.auth
    )
    assert launched.json()["status"] == "scheduled"
    assert queued_jobs(redis_client) == 0

    async def release(now: float) -> int:
        aio = redis.asyncio.Redis.from_url(api_settings.redis.url)
        try:
            return await release_due_broadcasts(aio, now=now)
        finally:
            await aio.aclose()

    assert asyncio.run(release(time.time())) == 0
    assert asyncio.run(release(32503680001)) == 1
    assert asyncio.run(release(32503680001)) == 0
    [(_, fields)] = redis_client.xrange(job_stream(slot_group(team.team_id)))
    assert fields[b"kind"].decode() == SEND_BROADCAST
    assert (
        client.get(f"{base}/broadcasts/{broadcast}", headers=team.auth).json()["status"]
        == "sending"
    )
