"""API test fixtures: the app on the harness's real Redis and SQLite, a recording producer."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api import routers
from api.app import create_app
from api.bootstrap import create_team_with_key
from api.db import migrate
from api.services.accounts import create_user
from kibamail.contracts import Event, Topic
from kibamail.settings import Settings


@dataclass
class RecordingProducer:
    """Unit-test stand-in for api.services.event_producer.EventProducer.

    Integration tests use Kafka."""

    events: list[tuple[Topic, Event]] = field(default_factory=list)

    def produce(self, topic: Topic, event: Event, key: str | None = None) -> None:
        self.events.append((topic, event))

    def flush(self, timeout: float = 0) -> int:
        return 0

    def close(self, timeout: float = 0) -> int:
        return 0


@pytest.fixture(scope="session")
def api_settings(test_settings: Settings, redis_service: str) -> Settings:
    """The harness settings, with the webhook SSRF filter opened for loopback receivers
    (test_webhook_ssrf.py tests the filter with it closed)."""
    migrate(test_settings.database.url)
    api = test_settings.api.model_copy(
        update={"webhook_allow_http": True, "webhook_allow_private": True}
    )
    return test_settings.model_copy(update={"api": api})


@pytest.fixture
def producer() -> RecordingProducer:
    return RecordingProducer()


@pytest.fixture
def client(
    api_settings: Settings, redis_client: Any, producer: RecordingProducer
) -> Iterator[TestClient]:
    app = create_app(api_settings, producer=producer, run_scheduler=False)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def isolated_client(
    api_settings: Settings,
    redis_client: Any,
    producer: RecordingProducer,
    tmp_path: Path,
) -> Iterator[TestClient]:
    """The app on its own, freshly migrated SQLite database: for tests that act on every
    row of a table (the webhook dispatcher sends every due delivery), so other tests'
    rows can neither be picked up nor be disturbed."""
    database = api_settings.database.model_copy(update={"url": f"sqlite:///{tmp_path}/api.db"})
    settings = api_settings.model_copy(update={"database": database})
    migrate(settings.database.url)
    app = create_app(settings, producer=producer, run_scheduler=False)
    with TestClient(app) as test_client:
        yield test_client


@dataclass
class SendingTeam:
    team_id: str
    api_key: str
    domain: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@pytest.fixture
def team(api_settings: Settings, redis_client: Any) -> SendingTeam:
    suffix = uuid.uuid4().hex[:8]
    domain = f"t{suffix}.example.com"
    team_id, key = create_team_with_key(
        api_settings, email=f"owner-{suffix}@example.com", team_name=f"team {suffix}", domain=domain
    )
    return SendingTeam(team_id, key, domain)


def signup(client: TestClient, email: str | None = None) -> dict[str, str]:
    """A new account with a verified address (its teams may send); returns its
    Authorization header. Made directly, not by POST /v1/auth/signup, so no verification
    email lands in the queue that tests count mails in (test_email_verification.py
    covers sign-up itself)."""
    email = email or f"u-{uuid.uuid4().hex[:10]}@example.com"
    with client.app.state.km.sessions.begin() as db:  # type: ignore[attr-defined]
        create_user(db, email, "long enough pw", verified=True)
    resp = client.post("/v1/auth/login", json={"email": email, "password": "long enough pw"})
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['token']}"}


@pytest.fixture
def fastapi_sends(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every send the FastAPI route itself performs (the fallback)."""
    calls: list[str] = []
    original = routers.emails.send_now

    async def recording_send_now(*args: Any, **kwargs: Any) -> Any:
        calls.append("fastapi")
        return await original(*args, **kwargs)

    monkeypatch.setattr(routers.emails, "send_now", recording_send_now)
    return calls
