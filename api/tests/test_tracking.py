"""Open pixel and click redirect: signed tokens, instant answers, one event per hit, in the
durable API outbox (RedisKeys.API_EVENT_OUTBOX) before the answer."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.services.rendering import CLICK_PURPOSE, tracked_html
from api.services.security import Signer
from api.tests.conftest import RecordingProducer
from kibamail.contracts import (
    EmailClickEvent,
    EmailOpenEvent,
    Event,
    Topic,
    UnsubscribeEvent,
    deserialize,
)
from kibamail.redis_keys import RedisKeys

pytestmark = pytest.mark.integration

HTML = '<html><body><a href="https://shop.example/p?a=1&amp;b=2">buy</a></body></html>'


def outbox_events(redis_client: Any) -> list[tuple[Topic, str, Event]]:
    """(topic, key, event) of every entry in the API outbox, oldest first."""
    models: dict[Topic, type[Event]] = {
        Topic.EMAIL_OPENS: EmailOpenEvent,
        Topic.EMAIL_CLICKS: EmailClickEvent,
        Topic.UNSUBSCRIBES: UnsubscribeEvent,
    }
    found = []
    for _entry_id, fields in redis_client.xrange(RedisKeys.API_EVENT_OUTBOX):
        topic = Topic(fields[b"topic"].decode())
        model = models.get(topic, Event)
        found.append((topic, fields[b"key"].decode(), deserialize(model, fields[b"value"])))
    return found


def _tracked(client: TestClient) -> str:
    state = client.app.state.km  # type: ignore[attr-defined]
    return tracked_html(
        HTML,
        signer=state.signer,
        public_url="http://testserver",
        message_id="m-1@acme.test",
        team_id="team-1",
    )


def test_open_pixel_returns_a_gif_and_produces_one_open_event(
    client: TestClient, producer: RecordingProducer, redis_client: Any
) -> None:
    pixel = re.search(r'src="http://testserver(/t/o/[^"]+)"', _tracked(client))
    assert pixel is not None
    resp = client.get(pixel.group(1), headers={"User-Agent": "Mail/1.0"})
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "image/gif" and len(resp.content) == 43
    assert "no-store" in resp.headers["cache-control"]
    assert producer.events == []  # not fire-and-forget to Kafka: through the outbox
    [(topic, key, event)] = outbox_events(redis_client)
    assert topic == Topic.EMAIL_OPENS and isinstance(event, EmailOpenEvent)
    assert key == "m-1@acme.test"
    assert (event.message_id, event.team_id, event.user_agent) == (
        "m-1@acme.test",
        "team-1",
        "Mail/1.0",
    )


def test_click_redirects_to_the_signed_url_only(
    client: TestClient, producer: RecordingProducer, redis_client: Any
) -> None:
    link = re.search(r'href="http://testserver(/t/c/[^"]+)"', _tracked(client))
    assert link is not None
    resp = client.get(link.group(1), follow_redirects=False)
    assert resp.status_code == 302
    assert resp.headers["location"] == "https://shop.example/p?a=1&b=2"
    assert producer.events == []
    [(topic, _key, event)] = outbox_events(redis_client)
    assert topic == Topic.EMAIL_CLICKS and isinstance(event, EmailClickEvent)
    assert event.url == "https://shop.example/p?a=1&b=2" and event.link_id == "0"


@pytest.mark.parametrize("path", ["/t/o/forged", "/t/c/forged", "/t/c/eyJ4Ijox.tampered"])
def test_forged_tokens_are_404_and_produce_nothing(
    client: TestClient, producer: RecordingProducer, redis_client: Any, path: str
) -> None:
    resp = client.get(path, follow_redirects=False)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"
    assert producer.events == [] and outbox_events(redis_client) == []


def test_a_token_signed_with_another_secret_cannot_redirect(
    client: TestClient, producer: RecordingProducer, redis_client: Any
) -> None:
    evil = Signer("attacker-secret").dumps(CLICK_PURPOSE, ["m", "t", "https://evil.example", 0])
    assert client.get(f"/t/c/{evil}", follow_redirects=False).status_code == 404
    assert producer.events == [] and outbox_events(redis_client) == []


def test_only_http_links_are_rewritten(client: TestClient) -> None:
    state: Any = client.app.state.km  # type: ignore[attr-defined]
    html = '<a href="mailto:x@y.z">m</a><a href="javascript:alert(1)">j</a>'
    out = tracked_html(
        html, signer=state.signer, public_url="http://h", message_id="m", team_id="t"
    )
    assert 'href="mailto:x@y.z"' in out and 'href="javascript:alert(1)"' in out
    assert "/t/c/" not in out and "/t/o/" in out
