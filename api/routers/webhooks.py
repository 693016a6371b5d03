"""Webhook endpoints per team: event filters, secret rotation, delivery log, replay."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field, StrictBool, field_validator
from sqlalchemy import select

from api.db import utcnow
from api.deps import DbDep, StateDep, TeamWebhooks
from api.errors import ApiError
from api.models import WebhookDelivery, WebhookEndpoint
from api.routers.etag import IfMatch, check_if_match, tagged
from api.routers.pagination import Cursor, Limit, paginate, paginate_items
from api.schemas import iso_utc
from api.webhooks.delivery import EVENT_TYPES
from api.webhooks.signing import new_secret
from api.webhooks.ssrf import UnsafeWebhookUrl, guard_from_settings

router = APIRouter(prefix="/v1/teams/{team_id}/webhooks", tags=["webhooks"])


class EndpointIn(BaseModel):
    url: str = Field(max_length=2000, pattern=r"^https?://[^\s]+$")
    event_types: list[str] = Field(
        default_factory=list,
        description="empty = every event",
        json_schema_extra={"items": {"type": "string", "enum": list(EVENT_TYPES)}},
    )
    enabled: StrictBool = True

    @field_validator("event_types")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(EVENT_TYPES))
        if unknown:
            raise ValueError(f"unknown event types {unknown}; known: {EVENT_TYPES}")
        return value


def _out(e: WebhookEndpoint) -> dict[str, Any]:
    return {"id": e.id, "url": e.url, "event_types": e.event_types, "enabled": e.enabled}


def _delivery_out(d: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "status": d.status,
        "attempts": d.attempts,
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "next_attempt_at": iso_utc(d.next_attempt_at),
        "delivered_at": iso_utc(d.delivered_at),
    }


def _check_url(state: StateDep, url: str) -> None:
    """SSRF filter at registration; delivery checks again (see api.webhooks.ssrf)."""
    try:
        guard_from_settings(state.settings).check(url)
    except UnsafeWebhookUrl as exc:
        raise ApiError(
            422, f"webhook URL refused: {exc}", details=[{"path": "url", "message": str(exc)}]
        ) from exc


def _get(db: DbDep, team_id: str, endpoint_id: str) -> WebhookEndpoint:
    row = db.get(WebhookEndpoint, endpoint_id)
    if row is None or row.team_id != team_id:
        raise ApiError(404, "webhook endpoint not found")
    return row


@router.get("/event-types", summary="Event types an endpoint can subscribe to")
def event_types(
    team_id: str, ctx: TeamWebhooks, cursor: Cursor = None, limit: Limit = 100
) -> dict[str, Any]:
    return paginate_items(list(EVENT_TYPES), str, cursor, limit)


@router.get("", summary="Webhook endpoints")
def list_endpoints(
    team_id: str, ctx: TeamWebhooks, db: DbDep, cursor: Cursor = None, limit: Limit = 100
) -> dict[str, Any]:
    query = select(WebhookEndpoint).where(WebhookEndpoint.team_id == ctx.team_id)
    return paginate(db, query, WebhookEndpoint.id, cursor, limit, _out)


@router.post("", status_code=201, summary="Add an endpoint (the signing secret is shown once)")
def create(
    team_id: str,
    body: EndpointIn,
    ctx: TeamWebhooks,
    db: DbDep,
    state: StateDep,
    response: Response,
) -> dict[str, Any]:
    _check_url(state, body.url)
    secret = new_secret()
    row = WebhookEndpoint(team_id=ctx.team_id, secrets=[secret], **body.model_dump())
    db.add(row)
    db.flush()
    tagged(response, _out(row))  # the ETag of what a GET/PUT sees (without the secret)
    return {**_out(row), "secret": secret}


@router.put("/{endpoint_id}", summary="Change URL, event filter or enabled flag (If-Match)")
def update(
    team_id: str,
    endpoint_id: str,
    body: EndpointIn,
    ctx: TeamWebhooks,
    db: DbDep,
    state: StateDep,
    response: Response,
    if_match: IfMatch = None,
) -> dict[str, Any]:
    row = _get(db, ctx.team_id, endpoint_id)
    check_if_match(if_match, _out(row))
    _check_url(state, body.url)
    for name, value in body.model_dump().items():
        setattr(row, name, value)
    return tagged(response, _out(row))


@router.delete("/{endpoint_id}", summary="Remove an endpoint")
def delete(team_id: str, endpoint_id: str, ctx: TeamWebhooks, db: DbDep) -> dict[str, Any]:
    db.delete(_get(db, ctx.team_id, endpoint_id))
    return {"deleted": endpoint_id}


@router.post(
    "/{endpoint_id}/rotate-secret", summary="New secret; the previous one keeps signing too"
)
def rotate(team_id: str, endpoint_id: str, ctx: TeamWebhooks, db: DbDep) -> dict[str, Any]:
    row = _get(db, ctx.team_id, endpoint_id)
    secret = new_secret()
    row.secrets = [secret, *row.secrets[:1]]
    return {**_out(row), "secret": secret}


@router.post(
    "/{endpoint_id}/drop-old-secrets", summary="Finish a rotation: sign with the newest only"
)
def drop_old(team_id: str, endpoint_id: str, ctx: TeamWebhooks, db: DbDep) -> dict[str, Any]:
    row = _get(db, ctx.team_id, endpoint_id)
    row.secrets = row.secrets[:1]
    return _out(row)


@router.get("/{endpoint_id}/deliveries", summary="Delivery log (newest ids first page by cursor)")
def deliveries(
    team_id: str,
    endpoint_id: str,
    ctx: TeamWebhooks,
    db: DbDep,
    cursor: Cursor = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    _get(db, ctx.team_id, endpoint_id)
    query = select(WebhookDelivery).where(
        WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.team_id == ctx.team_id
    )
    return paginate(db, query, WebhookDelivery.id, cursor, limit, _delivery_out)


@router.post("/{endpoint_id}/deliveries/{delivery_id}/replay", summary="Send a delivery again now")
def replay(
    team_id: str, endpoint_id: str, delivery_id: str, ctx: TeamWebhooks, db: DbDep
) -> dict[str, Any]:
    _get(db, ctx.team_id, endpoint_id)
    row = db.get(WebhookDelivery, delivery_id)
    if row is None or row.endpoint_id != endpoint_id or row.team_id != ctx.team_id:
        raise ApiError(404, "delivery not found")
    row.status = "pending"
    row.next_attempt_at = utcnow()
    return _delivery_out(row)
