"""Broadcasts through the job queue: fan-out, A/B, guard against double sends, pause,
resume, cancel, RFC 8058 unsubscribe."""

from __future__ import annotations

import email
from email import policy
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.jobs.broadcast_fanout import SEND_BROADCAST
from api.jobs.queue import enqueue, queued_jobs
from api.jobs.worker import build_worker
from api.tests.conftest import RecordingProducer, SendingTeam
from api.tests.test_tracking import outbox_events
from kibamail.contracts import MessageMapping, OutboundMessage, Topic, TrafficKind, deserialize
from kibamail.redis_keys import RedisKeys, slot_group
from kibamail.settings import Settings
from testing.submissions import submission_entries

pytestmark = pytest.mark.integration


def _setup(client: TestClient, team: SendingTeam, contacts: int) -> tuple[str, str]:
    base = f"/v1/teams/{team.team_id}"
    lst = client.post(f"{base}/lists", json={"name": "L"}, headers=team.auth).json()["id"]
    csv = "email,first_name\n" + "".join(f"c{i}@example.org,N{i}\n" for i in range(contacts))
    report = client.post(f"{base}/lists/{lst}/import", content=csv.encode(), headers=team.auth)
    assert report.json()["imported"] == contacts
    body = {
        "name": "Launch",
        "list_id": lst,
        "from": f"news@{team.domain}",
        "variants": [
            {"id": "a", "subject": "Hi {{ first_name }}", "html": "<p>A {{ first_name }}</p>"},
            {"id": "b", "subject": "Hello {{ first_name }}", "text": "B {{ unsubscribe_url }}"},
        ],
    }
    made = client.post(f"{base}/broadcasts", json=body, headers=team.auth)
    assert made.status_code == 201, made.text
    return lst, made.json()["id"]


def _drain(settings: Settings) -> None:
    worker = build_worker(settings, claim_idle_ms=60_000)
    while worker.run_once(block_ms=50):
        pass


def _messages(redis_client: Any) -> list[OutboundMessage]:
    return [OutboundMessage.from_stream_fields(f) for _, f in submission_entries(redis_client)]


def test_broadcast_fans_out_once_per_contact_with_ab_variants(
    client: TestClient, team: SendingTeam, api_settings: Settings, redis_client: Any
) -> None:
    _lst, broadcast = _setup(client, team, 40)
    url = f"/v1/teams/{team.team_id}/broadcasts/{broadcast}"
    launched = client.post(f"{url}/launch", json={}, headers=team.auth)
    assert launched.status_code == 200 and launched.json()["status"] == "sending"
    _drain(api_settings)
    messages = _messages(redis_client)
    assert len(messages) == 40
    assert len({m.recipients[0] for m in messages}) == 40
    variants = set()
    for message in messages:
        assert message.kind == TrafficKind.MARKETING and message.source == "broadcast"
        parsed = email.message_from_bytes(message.data, policy=policy.default)
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert parsed["List-Unsubscribe"].startswith("<http")
        raw = redis_client.get(RedisKeys.message_mapping(team.team_id, message.message_id))
        mapping = deserialize(MessageMapping, raw)
        assert mapping.broadcast_id == broadcast and mapping.kind == TrafficKind.MARKETING
        variants.add(mapping.variant_id)
        guard = RedisKeys.broadcast_sent(team.team_id, broadcast, mapping.contact_id)
        assert redis_client.exists(guard)
    assert variants == {"a", "b"}
    # A retried fan-out job (e.g. after a crash) mails nobody twice.
    enqueue(
        redis_client,
        SEND_BROADCAST,
        {"broadcast_id": broadcast, "team_id": team.team_id},
        slot_group(team.team_id),
    )
    _drain(api_settings)
    assert len(_messages(redis_client)) == 40
    progress = client.get(url, headers=team.auth).json()
    assert progress["progress"]["sent"] == 40 and progress["status"] == "sent"


def test_pause_parks_jobs_and_resume_sends_them(
    client: TestClient, team: SendingTeam, api_settings: Settings, redis_client: Any
) -> None:
    _lst, broadcast = _setup(client, team, 10)
    url = f"/v1/teams/{team.team_id}/broadcasts/{broadcast}"
    client.post(f"{url}/launch", json={}, headers=team.auth)
    assert client.post(f"{url}/pause", headers=team.auth).json()["status"] == "paused"
    _drain(api_settings)
    assert _messages(redis_client) == []
    assert client.post(f"{url}/resume", headers=team.auth).json()["status"] == "sending"
    _drain(api_settings)
    assert len(_messages(redis_client)) == 10


def test_cancel_skips_unsent_contacts_and_edits_need_a_draft(
    client: TestClient, team: SendingTeam, api_settings: Settings, redis_client: Any
) -> None:
    _lst, broadcast = _setup(client, team, 5)
    url = f"/v1/teams/{team.team_id}/broadcasts/{broadcast}"
    client.post(f"{url}/launch", json={}, headers=team.auth)
    assert client.post(f"{url}/cancel", headers=team.auth).json()["status"] == "cancelled"
    _drain(api_settings)
    assert _messages(redis_client) == []
    assert client.post(f"{url}/launch", json={}, headers=team.auth).status_code == 409
    assert client.delete(url, headers=team.auth).status_code == 409


def test_one_click_unsubscribe(
    client: TestClient,
    team: SendingTeam,
    api_settings: Settings,
    redis_client: Any,
    producer: RecordingProducer,
) -> None:
    lst, broadcast = _setup(client, team, 1)
    client.post(
        f"/v1/teams/{team.team_id}/broadcasts/{broadcast}/launch", json={}, headers=team.auth
    )
    _drain(api_settings)
    [message] = _messages(redis_client)
    parsed = email.message_from_bytes(message.data, policy=policy.default)
    path = "/u/" + parsed["List-Unsubscribe"].strip("<>").rsplit("/u/", 1)[1]
    assert client.post(path + "x", content=b"List-Unsubscribe=One-Click").status_code == 404
    page = client.get(path)
    assert page.status_code == 200 and "<form" in page.text
    contacts = client.get(f"/v1/teams/{team.team_id}/lists/{lst}/contacts", headers=team.auth)
    assert contacts.json()["data"][0]["status"] == "subscribed"
    done = client.post(
        path,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert done.status_code == 200
    contacts = client.get(f"/v1/teams/{team.team_id}/lists/{lst}/contacts", headers=team.auth)
    assert contacts.json()["data"][0]["status"] == "unsubscribed"
    assert producer.events == []  # through the durable outbox, not straight to Kafka
    [(topic, key, event)] = outbox_events(redis_client)
    assert topic == Topic.UNSUBSCRIBES and event.method == "one_click"  # type: ignore[attr-defined]
    assert event.team_id == team.team_id == key


def test_queue_is_empty_after_draining(
    client: TestClient, team: SendingTeam, api_settings: Settings, redis_client: Any
) -> None:
    _setup(client, team, 1)
    _drain(api_settings)
    assert queued_jobs(redis_client) == 0
