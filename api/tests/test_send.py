"""POST /v1/emails against real Redis: the MTA stream entry, validation, idempotency."""

from __future__ import annotations

import email
from email import policy
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from api.tests.conftest import SendingTeam
from kibamail.contracts import MessageMapping, OutboundMessage, deserialize
from kibamail.redis_keys import RedisKeys
from testing.submissions import submission_entries

pytestmark = pytest.mark.integration


def _payload(team: SendingTeam, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "from": f"Acme <hello@{team.domain}>",
        "to": ["alice@example.org"],
        "subject": "Your receipt",
        "html": '<html><body><p>Thanks!</p><a href="https://acme.test/r?id=1&amp;x=2">r</a></body></html>',
        "text": "Thanks!",
        "tags": ["receipt"],
    }
    body.update(overrides)
    return body


def _stream(redis_client: Any) -> list[OutboundMessage]:
    entries = submission_entries(redis_client)
    return [OutboundMessage.from_stream_fields(fields) for _, fields in entries]


def test_send_queues_rfc5322_message_for_the_mta(
    client: TestClient, team: SendingTeam, redis_client: Any
) -> None:
    resp = client.post("/v1/emails", json=_payload(team), headers=team.auth)
    assert resp.status_code == 200, resp.text
    message_id = resp.json()["id"]
    assert message_id.endswith(f"@{team.domain}") and "<" not in message_id
    [queued] = _stream(redis_client)
    assert queued.message_id == message_id
    assert queued.team_id == team.team_id
    assert queued.recipients == ["alice@example.org"]
    assert queued.mail_from == f"hello@{team.domain}"
    parsed = email.message_from_bytes(queued.data, policy=policy.default)
    assert parsed["Message-ID"] == f"<{message_id}>"
    assert parsed["Subject"] == "Your receipt"
    html = parsed.get_body(("html",)).get_content()
    assert "/t/o/" in html and "/t/c/" in html and "acme.test" not in html
    raw = redis_client.get(RedisKeys.message_mapping(team.team_id, message_id))
    mapping = deserialize(MessageMapping, raw)
    assert mapping.team_id == team.team_id and mapping.tags == ["receipt"]
    assert "RateLimit-Remaining" in resp.headers


def test_attachments_and_cc_bcc_reach_the_envelope(
    client: TestClient, team: SendingTeam, redis_client: Any
) -> None:
    payload = _payload(
        team,
        cc="carol@example.org",
        bcc=["bob@example.org"],
        attachments=[{"filename": "a.txt", "content": "aGVsbG8=", "content_type": "text/plain"}],
    )
    assert client.post("/v1/emails", json=payload, headers=team.auth).status_code == 200
    [queued] = _stream(redis_client)
    assert sorted(queued.recipients) == [
        "alice@example.org",
        "bob@example.org",
        "carol@example.org",
    ]
    parsed = email.message_from_bytes(queued.data, policy=policy.default)
    assert parsed["Bcc"] is None
    [attachment] = list(parsed.iter_attachments())
    assert attachment.get_filename() == "a.txt" and attachment.get_content() == "hello"


@pytest.mark.parametrize(
    ("override", "path"),
    [
        ({"subject": "Hi\r\nBcc: victim@example.org"}, "subject"),
        ({"from": "a@x.com\nBcc: v@example.org"}, "from"),
        ({"headers": {"X-Test": "a\r\nBcc: v@example.org"}}, "headers.X-Test"),
        ({"to": ["not-an-address"]}, "to.0"),
        ({"to": []}, "to"),
        ({"headers": {"Message-ID": "<x@y>"}}, "headers"),
        ({"attachments": [{"filename": "a", "content": "!!notbase64"}]}, "attachments.0.content"),
    ],
)
def test_bad_fields_are_refused_with_their_path_and_nothing_is_queued(
    client: TestClient, team: SendingTeam, redis_client: Any, override: dict[str, Any], path: str
) -> None:
    resp = client.post("/v1/emails", json=_payload(team, **override), headers=team.auth)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == "validation_error"
    assert path in [d["path"] for d in error["details"]]
    assert _stream(redis_client) == []


def test_invalid_json_is_422(client: TestClient, team: SendingTeam) -> None:
    resp = client.post(
        "/v1/emails",
        content=b"{not json",
        headers={**team.auth, "Content-Type": "application/json"},
    )
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "validation_error"


def test_oversized_body_is_413(client: TestClient, team: SendingTeam, redis_client: Any) -> None:
    huge = "x" * (client.app.state.km.settings.api.max_request_bytes + 10)  # type: ignore[attr-defined]
    resp = client.post("/v1/emails", json=_payload(team, text=huge), headers=team.auth)
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "payload_too_large"
    assert _stream(redis_client) == []


def test_auth_is_required(client: TestClient, team: SendingTeam) -> None:
    assert client.post("/v1/emails", json=_payload(team)).status_code == 401
    bad = {"Authorization": "Bearer km_forged"}
    resp = client.post("/v1/emails", json=_payload(team), headers=bad)
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "unauthorized"


def test_unverified_domain_and_suppressed_recipient_are_refused(
    client: TestClient, team: SendingTeam, redis_client: Any
) -> None:
    resp = client.post(
        "/v1/emails", json=_payload(team, **{"from": "x@unverified.example"}), headers=team.auth
    )
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "domain_not_verified"
    redis_client.sadd(RedisKeys.suppression(team.team_id), "alice@example.org")
    resp = client.post("/v1/emails", json=_payload(team), headers=team.auth)
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "recipient_suppressed"
    assert _stream(redis_client) == []


def test_idempotency_key_replays_and_refuses_a_different_body(
    client: TestClient, team: SendingTeam, redis_client: Any
) -> None:
    headers = {**team.auth, "Idempotency-Key": "order-42"}
    first = client.post("/v1/emails", json=_payload(team), headers=headers)
    again = client.post("/v1/emails", json=_payload(team), headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    other = client.post("/v1/emails", json=_payload(team, subject="Other"), headers=headers)
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert len(_stream(redis_client)) == 1
    stored = orjson.loads(redis_client.get(RedisKeys.idempotency(team.team_id, "order-42")))
    assert 0 < redis_client.ttl(RedisKeys.idempotency(team.team_id, "order-42")) <= 24 * 3600
    assert stored["response"]["id"] == first.json()["id"]


def test_failed_request_releases_its_idempotency_key(
    client: TestClient, team: SendingTeam, redis_client: Any
) -> None:
    headers = {**team.auth, "Idempotency-Key": "retry-me"}
    redis_client.sadd(RedisKeys.suppression(team.team_id), "alice@example.org")
    assert client.post("/v1/emails", json=_payload(team), headers=headers).status_code == 422
    redis_client.delete(RedisKeys.suppression(team.team_id))
    assert client.post("/v1/emails", json=_payload(team), headers=headers).status_code == 200


def test_batch_sends_all_or_nothing(
    client: TestClient, team: SendingTeam, redis_client: Any
) -> None:
    batch = [_payload(team, to=[f"u{i}@example.org"]) for i in range(3)]
    resp = client.post("/v1/emails/batch", json=batch, headers=team.auth)
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["data"]) == 3 and len(_stream(redis_client)) == 3
    bad = [*batch, _payload(team, subject="a\nb")]
    resp = client.post("/v1/emails/batch", json=bad, headers=team.auth)
    assert resp.status_code == 422
    assert resp.json()["error"]["details"][0]["path"] == "3.subject"
    too_many = [_payload(team)] * 101
    assert client.post("/v1/emails/batch", json=too_many, headers=team.auth).status_code == 422
    assert len(_stream(redis_client)) == 3


def test_a_replay_gets_the_first_answer_even_after_the_recipient_was_suppressed(
    client: TestClient, team: SendingTeam, redis_client: Any
) -> None:
    headers = {**team.auth, "Idempotency-Key": "order-77"}
    first = client.post("/v1/emails", json=_payload(team), headers=headers)
    assert first.status_code == 200
    redis_client.sadd(RedisKeys.suppression(team.team_id), "alice@example.org")
    again = client.post("/v1/emails", json=_payload(team), headers=headers)
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    fresh = client.post("/v1/emails", json=_payload(team), headers=team.auth)
    assert fresh.status_code == 422 and fresh.json()["error"]["code"] == "recipient_suppressed"
    assert len(_stream(redis_client)) == 1


def test_suppression_is_checked_for_cc_and_bcc_with_any_case(
    client: TestClient, team: SendingTeam, redis_client: Any
) -> None:
    redis_client.sadd(RedisKeys.suppression(team.team_id), "carol@example.org")
    resp = client.post(
        "/v1/emails", json=_payload(team, bcc=["Carol@Example.org"]), headers=team.auth
    )
    assert resp.status_code == 422
    assert resp.json()["error"]["details"] == [
        {"path": "to", "message": "Carol@Example.org is suppressed"}
    ]
    assert _stream(redis_client) == []
    assert redis_client.keys("msgmap:*") == []
