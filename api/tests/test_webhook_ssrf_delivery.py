"""The webhook SSRF filter in the API and the dispatcher: registration refuses unsafe URLs
(422 with the reason), and delivery re-checks and connects to the address it checked."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.models import WebhookDelivery, WebhookEndpoint
from api.tests.conftest import RecordingProducer, signup
from api.tests.test_webhook_ssrf import PUBLIC_V4
from api.webhooks.delivery import dispatch_due, record_event
from api.webhooks.ssrf import WebhookUrlGuard
from kibamail.contracts import CorrelatedMessageEvent, MessageStatus, Topic, serialize
from kibamail.settings import Settings
from testing.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.integration


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(status=204) as receiver:
        yield receiver


@pytest.fixture
def receiver_port(webhook_receiver: WebhookReceiver) -> int:
    return webhook_receiver.port


def test_registration_refuses_unsafe_urls_with_the_filter_on(
    api_settings: Settings, redis_client: Any
) -> None:
    strict_api = api_settings.api.model_copy(
        update={"webhook_allow_http": False, "webhook_allow_private": False}
    )
    settings = api_settings.model_copy(update={"api": strict_api})
    app = create_app(settings, producer=RecordingProducer(), run_scheduler=False)
    with TestClient(app) as client:
        auth = signup(client)
        team = client.post("/v1/teams", json={"name": "S"}, headers=auth).json()["id"]
        base = f"/v1/teams/{team}/webhooks"
        for url in (
            "https://169.254.169.254/latest/meta-data/",
            "https://localhost/hook",
            "https://0x7f000001/hook",
            "http://203.0.113.9/hook",
        ):
            resp = client.post(base, json={"url": url}, headers=auth)
            assert resp.status_code == 422, url
            error = resp.json()["error"]
            assert error["message"].startswith("webhook URL refused") and error["details"][0][
                "path"
            ] == ("url")
        assert client.get(base, headers=auth).json()["data"] == []


def _endpoint_with_delivery(client: TestClient, url: str) -> tuple[str, str, str]:
    auth = signup(client)
    team = client.post("/v1/teams", json={"name": "R"}, headers=auth).json()["id"]
    endpoint = client.post(f"/v1/teams/{team}/webhooks", json={"url": url}, headers=auth)
    assert endpoint.status_code == 201, endpoint.text
    event = CorrelatedMessageEvent(
        team_id=team, message_id=f"{uuid.uuid4()}@x", status=MessageStatus.DELIVERED
    )
    sessions = client.app.state.km.sessions  # type: ignore[attr-defined]
    with sessions.begin() as db:
        assert record_event(db, Topic.CLICKHOUSE_MESSAGES.value, serialize(event)) == 1
    return team, endpoint.json()["id"], event.event_id


def _delivery(client: TestClient, event_id: str) -> WebhookDelivery:
    sessions = client.app.state.km.sessions  # type: ignore[attr-defined]
    with sessions() as db:
        row = db.query(WebhookDelivery).filter(WebhookDelivery.event_id == event_id).one()
        db.expunge(row)
        return row


def _repoint(client: TestClient, event_id: str, url: str) -> None:
    """Give the endpoint a name only the test resolver knows (registration needs real DNS)."""
    sessions = client.app.state.km.sessions  # type: ignore[attr-defined]
    with sessions.begin() as db:
        row = db.query(WebhookDelivery).filter(WebhookDelivery.event_id == event_id).one()
        endpoint = db.get(WebhookEndpoint, row.endpoint_id)
        assert endpoint is not None
        endpoint.url = url


def test_delivery_connects_to_the_checked_address_not_a_fresh_lookup(
    isolated_client: TestClient,
    webhook_receiver: WebhookReceiver,
    receiver_port: int,
) -> None:
    """hooks.test exists only in the guard's resolver: the POST reaching the receiver
    proves the connection used the pinned address, with the name kept in Host."""
    client = isolated_client
    _team, _endpoint, event_id = _endpoint_with_delivery(
        client, f"http://127.0.0.1:{receiver_port}/hook"
    )
    _repoint(client, event_id, f"http://hooks.test:{receiver_port}/hook")
    sessions = client.app.state.km.sessions  # type: ignore[attr-defined]
    guard = WebhookUrlGuard(
        allow_http=True, allow_private=True, resolver=lambda host, port: ["127.0.0.1"]
    )
    with httpx.Client(trust_env=False) as http:
        assert dispatch_due(sessions, http, guard) == 1  # its own table: only this delivery
    assert [h["Host"] for h, _ in webhook_receiver.received] == [f"hooks.test:{receiver_port}"]
    assert _delivery(client, event_id).status == "delivered"


def test_dns_rebinding_to_a_private_address_is_refused_at_delivery(
    isolated_client: TestClient,
    webhook_receiver: WebhookReceiver,
    receiver_port: int,
) -> None:
    """Registered while hooks.test was public; at delivery time it answers 127.0.0.1."""
    client = isolated_client
    _team, _endpoint, event_id = _endpoint_with_delivery(
        client, f"http://127.0.0.1:{receiver_port}/hook"
    )
    _repoint(client, event_id, f"https://hooks.test:{receiver_port}/hook")
    sessions = client.app.state.km.sessions  # type: ignore[attr-defined]
    answers = iter([[PUBLIC_V4], ["127.0.0.1"]])
    guard = WebhookUrlGuard(resolver=lambda host, port: next(answers))
    guard.check(f"https://hooks.test:{receiver_port}/hook")  # what registration saw
    with httpx.Client(trust_env=False) as http:
        assert dispatch_due(sessions, http, guard) == 1  # its own table: only this delivery
    delivery = _delivery(client, event_id)
    assert webhook_receiver.received == []
    assert delivery.status == "pending" and delivery.attempts == 1
    assert "SSRF" in delivery.last_error and "loopback" in delivery.last_error
