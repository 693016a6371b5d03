"""The lean handlers of api.fastpath.asgi: they answer the happy path themselves, see a
revocation made by another process at once, and hand everything else to FastAPI."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from api.fastpath.asgi import is_json_content_type
from api.models import ApiKey
from api.services.accounts import revoke_api_key
from api.services.security import sha256_hex
from api.tests.conftest import RecordingProducer, SendingTeam
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from testing.submissions import submission_count

pytestmark = pytest.mark.integration


def _payload(team: SendingTeam) -> dict[str, Any]:
    return {
        "from": f"Acme <hello@{team.domain}>",
        "to": ["bob@example.org"],
        "subject": "Hot",
        "html": '<html><body><a href="https://acme.test/x">x</a></body></html>',
        "text": "Hot",
    }


@pytest.fixture
def second_process(api_settings: Settings, redis_client: Any) -> Iterator[TestClient]:
    """Another API process: its own app state and API-key cache."""
    app = create_app(api_settings, producer=RecordingProducer(), run_scheduler=False)
    with TestClient(app) as test_client:
        yield test_client


def test_the_hot_path_sends_without_the_fastapi_route(
    client: TestClient,
    team: SendingTeam,
    redis_client: Any,
    fastapi_sends: list[str],
    api_settings: Settings,
) -> None:
    first = client.post("/v1/emails", json=_payload(team), headers=team.auth)  # loads the key
    second = client.post("/v1/emails", json=_payload(team), headers=team.auth)
    assert first.status_code == second.status_code == 200, second.text
    assert second.json()["status"] == "queued"
    assert fastapi_sends == ["fastapi"]  # only the first request, to populate Redis
    assert submission_count(redis_client) == 2
    assert second.headers["RateLimit-Limit"] == first.headers["RateLimit-Limit"]
    assert int(second.headers["RateLimit-Remaining"]) <= int(second.headers["RateLimit-Limit"]) - 1
    scrape = {"Authorization": f"Bearer {api_settings.api.metrics_token}"}
    metrics = client.get("/metrics", headers=scrape).text
    assert 'route="/v1/emails",status="200"' in metrics


def test_a_revocation_in_another_process_refuses_the_next_send(
    client: TestClient,
    second_process: TestClient,
    team: SendingTeam,
    redis_client: Any,
) -> None:
    for _ in range(2):  # both processes now hold the key in memory
        assert client.post("/v1/emails", json=_payload(team), headers=team.auth).status_code == 200
        assert (
            second_process.post("/v1/emails", json=_payload(team), headers=team.auth).status_code
            == 200
        )
    queued = submission_count(redis_client)
    state = second_process.app.state.km  # type: ignore[attr-defined]
    with state.sessions.begin() as db:
        key = db.scalar(select(ApiKey).where(ApiKey.key_hash == sha256_hex(team.api_key)))
        revoke_api_key(db, state.sync_redis, key)
    refused = client.post("/v1/emails", json=_payload(team), headers=team.auth)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
    assert submission_count(redis_client) == queued


def test_an_expired_key_record_is_reloaded_and_the_hot_path_resumes(
    client: TestClient, team: SendingTeam, redis_client: Any, fastapi_sends: list[str]
) -> None:
    assert client.post("/v1/emails", json=_payload(team), headers=team.auth).status_code == 200
    redis_client.delete(
        RedisKeys.api_key(team.team_id, sha256_hex(team.api_key))
    )  # the 300 s TTL ran out
    for _ in range(3):
        assert client.post("/v1/emails", json=_payload(team), headers=team.auth).status_code == 200
    assert fastapi_sends == ["fastapi", "fastapi"]  # the first load, then the reload only
    assert submission_count(redis_client) == 4


def test_non_json_and_unknown_keys_get_the_fastapi_answers(
    client: TestClient, team: SendingTeam, redis_client: Any
) -> None:
    as_text = client.post(
        "/v1/emails",
        content=b'{"from": "x"}',
        headers={**team.auth, "Content-Type": "text/plain"},
    )
    # A body declared as something other than JSON is refused as the contract documents
    # (415); the fast path hands it to FastAPI.
    assert as_text.status_code == 415
    assert as_text.json()["error"]["code"] == "unsupported_media_type"
    untyped = client.post("/v1/emails", content=orjson.dumps(_payload(team)), headers=team.auth)
    assert untyped.status_code == 422  # no Content-Type at all: FastAPI's missing body
    unknown = client.post(
        "/v1/emails", json=_payload(team), headers={"Authorization": "Bearer km_not-a-key"}
    )
    assert unknown.status_code == 401
    assert submission_count(redis_client) == 0


def test_forged_tracking_tokens_fall_through_to_404_and_produce_nothing(
    client: TestClient, producer: RecordingProducer
) -> None:
    assert client.get("/t/o/eyJmb28iOjF9.forged").status_code == 404
    assert client.get("/t/c/eyJmb28iOjF9.forged").status_code == 404
    assert producer.events == []


@pytest.mark.parametrize(
    ("content_type", "is_json"),
    [
        (None, False),
        (b"application/json", True),
        (b"Application/JSON; charset=utf-8", True),
        (b"application/vnd.api+json", True),
        (b"text/plain", False),
        (b"application/x-www-form-urlencoded", False),
    ],
)
def test_the_hot_path_parses_the_bodies_fastapi_parses_as_json(
    content_type: bytes | None, is_json: bool
) -> None:
    assert is_json_content_type(content_type) is is_json
