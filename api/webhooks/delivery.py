"""Turning stream events into webhook deliveries, and delivering them with retries.

Fixed retry schedule (Standard Webhooks / Svix style): immediately, then 5 s, 5 min,
30 min, 2 h, 5 h, 10 h, 10 h after each failure (~27.5 h in all); then `failed`.
Deliveries are rows, so the log, retries and manual replay survive restarts, and
several dispatcher processes can share the work (a row is leased before sending).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from api.db import utcnow
from api.models import WebhookDelivery, WebhookEndpoint
from api.webhooks.signing import signature_headers
from api.webhooks.ssrf import UnsafeWebhookUrl, WebhookUrlGuard
from kibamail.contracts import Topic

log = logging.getLogger(__name__)

RETRY_SCHEDULE = [
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
]
LEASE = timedelta(seconds=60)
TIMEOUT_SECONDS = 10.0

STATUS_EVENT_TYPES = {
    "accepted": "email.sent",
    "held": "email.held",
    "deferred": "email.deferred",
    "delivered": "email.delivered",
    "bounced": "email.bounced",
    "failed": "email.failed",
    "expired": "email.failed",
    "complained": "email.complained",
}
EVENT_TYPES = sorted(
    {
        *STATUS_EVENT_TYPES.values(),
        "email.opened",
        "email.clicked",
        "contact.unsubscribed",
        "team.paused",
        "team.unpaused",
    }
)
TOPICS = [
    Topic.CLICKHOUSE_MESSAGES,
    Topic.CLICKHOUSE_EMAIL_OPENS,
    Topic.CLICKHOUSE_EMAIL_CLICKS,
    Topic.UNSUBSCRIBES,
    Topic.TEAM_PAUSES,
]


def event_type(topic: str, event: dict[str, Any]) -> str | None:
    if topic == Topic.CLICKHOUSE_MESSAGES:
        return STATUS_EVENT_TYPES.get(str(event.get("status")))
    if topic == Topic.TEAM_PAUSES:  # TeamPauseEvent: scoring / reputation pause, API un-pause
        paused = event.get("paused")
        if not isinstance(paused, bool):
            return None
        return "team.paused" if paused else "team.unpaused"
    return {
        Topic.CLICKHOUSE_EMAIL_OPENS.value: "email.opened",
        Topic.CLICKHOUSE_EMAIL_CLICKS.value: "email.clicked",
        Topic.UNSUBSCRIBES.value: "contact.unsubscribed",
    }.get(topic)


def record_event(db: Session, topic: str, payload: bytes) -> int:
    """One pending delivery per subscribed endpoint; a redelivered event adds nothing."""
    event = orjson.loads(payload)
    kind = event_type(topic, event)
    team_id = event.get("team_id")
    if kind is None or not team_id:
        return 0
    endpoints = db.scalars(
        select(WebhookEndpoint).where(
            WebhookEndpoint.team_id == team_id, WebhookEndpoint.enabled.is_(True)
        )
    )
    body = orjson.dumps({"type": kind, "created_at": event.get("occurred_at"), "data": event})
    created = 0
    for endpoint in endpoints:
        if endpoint.event_types and kind not in endpoint.event_types:
            continue
        try:
            with db.begin_nested():
                db.add(
                    WebhookDelivery(
                        team_id=team_id,
                        endpoint_id=endpoint.id,
                        event_id=str(event["event_id"]),
                        event_type=kind,
                        payload=body.decode(),
                        next_attempt_at=utcnow(),
                    )
                )
            created += 1
        except IntegrityError:
            pass  # already recorded (the consumer re-read this event after a restart)
    return created


def _lease(sessions: sessionmaker[Session], limit: int) -> list[str]:
    now = utcnow()
    with sessions.begin() as db:
        due = list(
            db.scalars(
                select(WebhookDelivery.id)
                .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(limit)
            )
        )
        leased = []
        for delivery_id in due:
            claimed = db.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id, WebhookDelivery.next_attempt_at <= now)
                .values(next_attempt_at=now + LEASE)
            )
            if claimed.rowcount:  # type: ignore[attr-defined]
                leased.append(delivery_id)
        return leased


def _post(
    client: httpx.Client, guard: WebhookUrlGuard, url: str, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    """POST to the address the SSRF check just approved (no second DNS lookup, no redirects)."""
    target = guard.check(url)
    extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else {}
    return client.post(
        target.connect_url,
        content=body,
        headers={**headers, "Host": target.host_header},
        timeout=TIMEOUT_SECONDS,
        follow_redirects=False,
        extensions=extensions,
    )


def attempt(
    db: Session, delivery: WebhookDelivery, client: httpx.Client, guard: WebhookUrlGuard
) -> None:
    endpoint = db.get(WebhookEndpoint, delivery.endpoint_id)
    if endpoint is None:
        delivery.status = "failed"
        delivery.last_error = "endpoint deleted"
        return
    body = delivery.payload.encode()
    headers = signature_headers(endpoint.secrets, delivery.event_id, body)
    delivery.attempts += 1
    try:
        response = _post(client, guard, endpoint.url, body, headers)
        delivery.last_status_code = response.status_code
        ok = 200 <= response.status_code < 300
        delivery.last_error = "" if ok else response.text[:500]
    except UnsafeWebhookUrl as exc:
        ok = False
        delivery.last_status_code = 0
        delivery.last_error = f"refused by the SSRF filter: {exc}"[:500]
    except httpx.HTTPError as exc:
        ok = False
        delivery.last_status_code = 0
        delivery.last_error = f"{type(exc).__name__}: {exc}"[:500]
    if ok:
        delivery.status = "delivered"
        delivery.delivered_at = utcnow()
        delivery.next_attempt_at = None
    elif delivery.attempts > len(RETRY_SCHEDULE):
        delivery.status = "failed"
        delivery.next_attempt_at = None
    else:
        delivery.next_attempt_at = utcnow() + RETRY_SCHEDULE[delivery.attempts - 1]


def dispatch_due(
    sessions: sessionmaker[Session],
    client: httpx.Client,
    guard: WebhookUrlGuard,
    limit: int = 100,
) -> int:
    """Send every due delivery once; returns how many were attempted."""
    leased = _lease(sessions, limit)
    for delivery_id in leased:
        with sessions.begin() as db:
            delivery = db.get(WebhookDelivery, delivery_id)
            if delivery is not None and delivery.status == "pending":
                attempt(db, delivery, client, guard)
    return len(leased)
