"""A list that grows between a broadcast's launch and its fan-out cannot overrun the team's
daily cap: contacts past the launch reservation are charged at fan-out, and those that do
not fit are not queued (counted as over_budget), never mailed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.jobs.broadcast_fanout import progress_key
from api.jobs.worker import build_worker
from api.tests.conftest import RecordingProducer, SendingTeam
from kibamail import team_budget
from kibamail.redis_keys import RedisKeys
from kibamail.settings import SendingLimits, Settings
from testing.submissions import submission_count, submission_entries

pytestmark = pytest.mark.integration

LIMITS = SendingLimits(per_second=0.001, burst=1000, per_day=10)


@pytest.fixture
def limited_settings(api_settings: Settings) -> Settings:
    return api_settings.model_copy(update={"sending": LIMITS})


@pytest.fixture
def limited(limited_settings: Settings, redis_client: Any) -> Iterator[TestClient]:
    app = create_app(limited_settings, producer=RecordingProducer(), run_scheduler=False)
    with TestClient(app) as client:
        yield client


def _import(client: TestClient, team: SendingTeam, list_id: str, start: int, count: int) -> None:
    csv = "email\n" + "".join(f"g{i}@example.org\n" for i in range(start, start + count))
    url = f"/v1/teams/{team.team_id}/lists/{list_id}/import"
    report = client.post(url, content=csv.encode(), headers=team.auth)
    assert report.json()["imported"] == count, report.text


def _launched(client: TestClient, team: SendingTeam, contacts: int) -> tuple[str, str]:
    base = f"/v1/teams/{team.team_id}"
    list_id = client.post(f"{base}/lists", json={"name": "G"}, headers=team.auth).json()["id"]
    _import(client, team, list_id, 0, contacts)
    body = {
        "name": "B",
        "list_id": list_id,
        "from": f"news@{team.domain}",
        "variants": [{"subject": "s", "text": "t"}],
    }
    broadcast = client.post(f"{base}/broadcasts", json=body, headers=team.auth).json()["id"]
    launched = client.post(f"{base}/broadcasts/{broadcast}/launch", json={}, headers=team.auth)
    assert launched.json()["status"] == "sending", launched.text
    return list_id, broadcast


def _drain(settings: Settings) -> None:
    worker = build_worker(settings, claim_idle_ms=60_000)
    while worker.run_once(block_ms=50):
        pass


def _day_count(redis_client: Any, team_id: str) -> int:
    raw = redis_client.get(RedisKeys.team_daily_sent(team_id, team_budget.utc_day()))
    return int(raw or 0)


def test_growth_that_fits_is_charged_and_sent(
    limited: TestClient, limited_settings: Settings, team: SendingTeam, redis_client: Any
) -> None:
    list_id, broadcast = _launched(limited, team, 4)
    assert _day_count(redis_client, team.team_id) == 4
    _import(limited, team, list_id, 100, 5)  # the list grows before the fan-out runs
    _drain(limited_settings)
    progress = redis_client.hgetall(progress_key(team.team_id, broadcast))
    assert int(progress[b"total"]) == 9 and int(progress[b"reserved"]) == 9
    assert b"over_budget" not in progress
    assert _day_count(redis_client, team.team_id) == 9
    assert submission_count(redis_client) == 9


def test_growth_past_the_daily_cap_is_not_queued(
    limited: TestClient, limited_settings: Settings, team: SendingTeam, redis_client: Any
) -> None:
    list_id, broadcast = _launched(limited, team, 4)
    _import(limited, team, list_id, 100, 8)  # 4 + 8 > the cap of 10
    _drain(limited_settings)
    progress = redis_client.hgetall(progress_key(team.team_id, broadcast))
    assert int(progress[b"total"]) == 4 and int(progress[b"over_budget"]) == 8
    assert _day_count(redis_client, team.team_id) == 4
    assert submission_count(redis_client) == 4


def test_a_contact_unsubscribed_after_the_fan_out_is_not_mailed(
    limited: TestClient, limited_settings: Settings, team: SendingTeam, redis_client: Any
) -> None:
    """The per-contact job reads the contact's status when it runs, not at fan-out."""
    list_id, broadcast = _launched(limited, team, 3)
    base = f"/v1/teams/{team.team_id}"
    worker = build_worker(limited_settings, claim_idle_ms=60_000)
    assert worker.run_once(block_ms=50)  # the fan-out job: three per-contact jobs queued
    contacts = limited.get(f"{base}/lists/{list_id}/contacts", headers=team.auth).json()
    [first, *_] = contacts["data"]
    patched = limited.patch(
        f"{base}/contacts/{first['id']}", json={"status": "unsubscribed"}, headers=team.auth
    )
    assert patched.status_code == 200, patched.text
    while worker.run_once(block_ms=50):
        pass
    recipients = {fields[b"meta"] for _, fields in submission_entries(redis_client)}
    assert len(recipients) == 2
    assert not any(first["email"].encode() in meta for meta in recipients)
    assert int(redis_client.hget(progress_key(team.team_id, broadcast), "skipped")) == 1
