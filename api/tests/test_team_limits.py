"""The team's send budget on every API intake (kibamail.team_budget): many keys, big
batches, scheduled sends, broadcasts bigger than the cap, a paused or bulk-scored team.

Each test plays the attacker trying to send more than the team's budget and counts what
reached the MTA stream (and the schedule / job queue): nothing beyond the budget."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.bootstrap import create_team_with_key
from api.jobs.queue import queued_jobs
from api.services.sending import scheduled_count
from api.tests.conftest import RecordingProducer, SendingTeam
from kibamail import team_budget
from kibamail.redis_keys import RedisKeys
from kibamail.settings import SendingLimits, Settings
from testing.submissions import submission_count

pytestmark = pytest.mark.integration

# A refill this slow adds nothing during a test: the burst is the whole budget.
SLOW = 0.001


def _app(settings: Settings, **limits: Any) -> TestClient:
    sending = SendingLimits(**{"per_second": SLOW, "burst": 1000, "per_day": 10**6, **limits})
    app = create_app(
        settings.model_copy(update={"sending": sending}),
        producer=RecordingProducer(),
        run_scheduler=False,
    )
    return TestClient(app)


@pytest.fixture
def limited(api_settings: Settings, redis_client: Any, request: Any) -> Iterator[TestClient]:
    with _app(api_settings, **request.param) as client:
        yield client


def _email(team: SendingTeam, recipients: int = 1, **extra: Any) -> dict[str, Any]:
    to = [f"r{i}@example.org" for i in range(recipients)]
    return {"from": f"a@{team.domain}", "to": to, "subject": "s", "text": "t", **extra}


def _queued(redis_client: Any) -> int:
    return int(submission_count(redis_client))


def _day_count(redis_client: Any, team_id: str) -> int:
    key = RedisKeys.team_daily_sent(team_id, team_budget.utc_day())
    return int(redis_client.get(key) or 0)


def _new_keys(client: TestClient, team: SendingTeam, count: int) -> list[dict[str, str]]:
    keys = []
    for i in range(count):
        made = client.post(
            f"/v1/teams/{team.team_id}/api-keys",
            json={"name": f"extra-{i}", "scope": "sending"},
            headers=team.auth,
        )
        assert made.status_code == 201, made.text
        keys.append({"Authorization": f"Bearer {made.json()['key']}"})
    return keys


@pytest.mark.parametrize("limited", [{"burst": 6}], indirect=True)
def test_five_keys_of_one_team_share_one_budget(
    limited: TestClient, team: SendingTeam, redis_client: Any, fastapi_sends: list[str]
) -> None:
    keys = [team.auth, *_new_keys(limited, team, 4)]
    answers = [limited.post("/v1/emails", json=_email(team), headers=k) for k in keys * 3]
    codes = [a.status_code for a in answers]
    assert codes.count(200) == 6 and codes.count(429) == 9, codes
    assert 0 < len(fastapi_sends) < 15  # both the FastAPI route and the fast path refused
    refused = answers[-1]
    assert refused.json()["error"]["code"] == "rate_limited"
    assert "shared by all its API keys" in refused.json()["error"]["message"]
    assert refused.headers["RateLimit-Limit"] == "6"
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert int(refused.headers["Retry-After"]) >= 1
    assert _queued(redis_client) == 6
    assert _day_count(redis_client, team.team_id) == 6


@pytest.mark.parametrize("limited", [{"burst": 150}], indirect=True)
def test_a_batch_costs_one_per_message_and_recipient_all_or_nothing(
    limited: TestClient, team: SendingTeam, redis_client: Any
) -> None:
    first = limited.post("/v1/emails/batch", json=[_email(team)] * 100, headers=team.auth)
    assert first.status_code == 200, first.text
    second = limited.post("/v1/emails/batch", json=[_email(team)] * 100, headers=team.auth)
    assert second.status_code == 429, second.text
    assert second.json()["error"]["code"] == "rate_limited"
    assert "Retry-After" in second.headers and second.headers["RateLimit-Remaining"] == "50"
    assert _queued(redis_client) == 100  # nothing of the refused batch
    # 100 messages x 2 recipients can never fit a burst of 150: refused as too large.
    too_big = limited.post("/v1/emails/batch", json=[_email(team, 2)] * 100, headers=team.auth)
    assert too_big.status_code == 422 and too_big.json()["error"]["code"] == "exceeds_team_burst"
    fits = limited.post("/v1/emails/batch", json=[_email(team, 5)] * 10, headers=team.auth)
    assert fits.status_code == 200, fits.text
    assert _queued(redis_client) == 110
    assert _day_count(redis_client, team.team_id) == 150


@pytest.mark.parametrize("limited", [{"per_day": 10}], indirect=True)
def test_the_daily_cap_counts_recipients_across_sends_batches_and_schedules(
    limited: TestClient, team: SendingTeam, redis_client: Any
) -> None:
    for _ in range(2):
        assert limited.post("/v1/emails", json=_email(team, 3), headers=team.auth).is_success
    later = _email(team, 2, send_at="2999-01-01T00:00:00Z")
    scheduled = limited.post("/v1/emails", json=later, headers=team.auth)
    assert scheduled.json()["status"] == "scheduled"  # charged at acceptance: 8 used
    over = limited.post("/v1/emails", json=_email(team, 3), headers=team.auth)
    assert over.status_code == 429, over.text
    body = over.json()["error"]
    assert body["code"] == "daily_cap_reached" and "8 of 10" in body["message"]
    assert over.headers["RateLimit-Limit"] == "10" and over.headers["RateLimit-Remaining"] == "2"
    assert 1 <= int(over.headers["Retry-After"]) <= 86400
    batch = limited.post("/v1/emails/batch", json=[_email(team)] * 3, headers=team.auth)
    assert batch.status_code == 429 and batch.json()["error"]["code"] == "daily_cap_reached"
    later3 = _email(team, 3, send_at="2999-01-01T00:00:00Z")
    again = limited.post("/v1/emails", json=later3, headers=team.auth)
    assert again.status_code == 429
    assert scheduled_count(redis_client) == 1 and _queued(redis_client) == 2
    last = limited.post("/v1/emails/batch", json=[_email(team)] * 2, headers=team.auth)
    assert last.status_code == 200
    assert _day_count(redis_client, team.team_id) == 10 and _queued(redis_client) == 4


def _broadcast(client: TestClient, team: SendingTeam, contacts: int) -> str:
    base = f"/v1/teams/{team.team_id}"
    lst = client.post(f"{base}/lists", json={"name": "L"}, headers=team.auth).json()["id"]
    csv = "email\n" + "".join(f"c{i}@example.org\n" for i in range(contacts))
    report = client.post(f"{base}/lists/{lst}/import", content=csv.encode(), headers=team.auth)
    assert report.json()["imported"] == contacts
    body = {
        "name": "B",
        "list_id": lst,
        "from": f"news@{team.domain}",
        "variants": [{"subject": "s", "text": "t"}],
    }
    made = client.post(f"{base}/broadcasts", json=body, headers=team.auth)
    assert made.status_code == 201, made.text
    return f"{base}/broadcasts/{made.json()['id']}"


@pytest.mark.parametrize("limited", [{"per_day": 10}], indirect=True)
def test_a_broadcast_bigger_than_what_is_left_today_is_refused_at_launch(
    limited: TestClient, team: SendingTeam, redis_client: Any
) -> None:
    huge, big, small = (_broadcast(limited, team, n) for n in (11, 8, 4))
    whole = limited.post(f"{huge}/launch", json={}, headers=team.auth)
    assert whole.status_code == 422 and whole.json()["error"]["code"] == "exceeds_daily_cap"
    assert limited.post("/v1/emails", json=_email(team, 3), headers=team.auth).is_success
    refused = limited.post(f"{big}/launch", json={}, headers=team.auth)
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert error["code"] == "daily_cap_reached" and "broadcast of 8 recipients" in error["message"]
    assert "Retry-After" in refused.headers
    assert limited.get(big, headers=team.auth).json()["status"] == "draft"
    assert queued_jobs(redis_client) == 0 and _day_count(redis_client, team.team_id) == 3
    # Scheduled: charged at launch; a re-launch is not charged twice; cancel gives it back.
    later = {"send_at": "2999-01-01T00:00:00Z"}
    for _ in range(2):
        launched = limited.post(f"{small}/launch", json=later, headers=team.auth)
        assert launched.json()["status"] == "scheduled", launched.text
    assert _day_count(redis_client, team.team_id) == 7
    assert limited.post(f"{big}/launch", json={}, headers=team.auth).status_code == 429
    assert limited.post(f"{small}/cancel", headers=team.auth).json()["status"] == "cancelled"
    assert _day_count(redis_client, team.team_id) == 3
    assert limited.post(f"{huge}/launch", json={}, headers=team.auth).status_code == 422
    assert queued_jobs(redis_client) == 0 and _queued(redis_client) == 1


def test_a_paused_team_is_refused_on_every_api_path(
    client: TestClient, team: SendingTeam, redis_client: Any
) -> None:
    broadcast = _broadcast(client, team, 2)
    reason = orjson.dumps({"reason": "bulk score 0.93 over 0.7"})
    redis_client.set(RedisKeys.team_paused(team.team_id), reason)
    later = _email(team, send_at="2999-01-01T00:00:00Z")
    answers = [
        client.post("/v1/emails", json=_email(team), headers=team.auth),  # FastAPI route
        client.post("/v1/emails", json=_email(team), headers=team.auth),  # fast path
        client.post("/v1/emails/batch", json=[_email(team)] * 2, headers=team.auth),
        client.post("/v1/emails", json=later, headers=team.auth),
        client.post(f"{broadcast}/launch", json={}, headers=team.auth),
    ]
    for answer in answers:
        assert answer.status_code == 429, answer.text
        assert answer.json()["error"]["code"] == "team_paused"
        assert "bulk score 0.93 over 0.7" in answer.json()["error"]["message"]
        assert answer.headers["Retry-After"] == "300"
    assert _queued(redis_client) == 0 and scheduled_count(redis_client) == 0
    assert queued_jobs(redis_client) == 0 and _day_count(redis_client, team.team_id) == 0


def test_a_bulk_scored_team_cannot_send_transactional_mail_but_may_broadcast(
    client: TestClient, team: SendingTeam, redis_client: Any, api_settings: Settings
) -> None:
    """As the MTA's bulk gate: transactional refused for good (SMTP 550 -> 403)."""
    broadcast = _broadcast(client, team, 2)
    over = api_settings.sending.bulk_max_score + 0.05
    redis_client.set(RedisKeys.reputation_throttle("bulk_score", team.team_id), str(over))
    answers = [
        client.post("/v1/emails", json=_email(team), headers=team.auth),
        client.post("/v1/emails", json=_email(team), headers=team.auth),
        client.post("/v1/emails/batch", json=[_email(team)], headers=team.auth),
    ]
    for answer in answers:
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"]["code"] == "bulk_traffic"
        assert "send it as a broadcast" in answer.json()["error"]["message"]
    assert _queued(redis_client) == 0
    launched = client.post(f"{broadcast}/launch", json={}, headers=team.auth)
    assert launched.json()["status"] == "sending", launched.text
    assert _day_count(redis_client, team.team_id) == 2


@pytest.mark.parametrize("limited", [{"burst": 2}], indirect=True)
def test_one_team_exhausting_its_budget_leaves_another_team_alone(
    limited: TestClient, team: SendingTeam, api_settings: Settings, redis_client: Any
) -> None:
    suffix = uuid.uuid4().hex[:8]
    domain = f"o{suffix}.example.com"
    other_id, other_key = create_team_with_key(
        api_settings, email=f"o-{suffix}@example.com", team_name=f"o {suffix}", domain=domain
    )
    other = SendingTeam(other_id, other_key, domain)
    codes = [limited.post("/v1/emails", json=_email(team), headers=team.auth) for _ in range(3)]
    assert [c.status_code for c in codes] == [200, 200, 429]
    sent = limited.post("/v1/emails", json=_email(other), headers=other.auth)
    assert sent.status_code == 200, sent.text
    assert _day_count(redis_client, team.team_id) == 2
    assert _day_count(redis_client, other.team_id) == 1
    assert _queued(redis_client) == 3
