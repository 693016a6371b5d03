"""Broadcasts: Authors create and edit; Managers and Administrators launch and control."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from api.deps import DbDep, StateDep, TeamCampaigns, TeamContentWrite, TeamLaunch
from api.errors import ApiError
from api.models import Broadcast, Contact, ContactList, Domain
from api.routers.etag import IfMatch, check_if_match, tagged
from api.routers.pagination import Cursor, Limit, paginate
from api.schemas import EmailAddress, SafeLine, iso_utc
from api.services import broadcast_lifecycle as lifecycle
from api.services.rendering import address_domain
from api.services.templating import check_template

router = APIRouter(prefix="/v1/teams/{team_id}/broadcasts", tags=["broadcasts"])


class VariantIn(BaseModel):
    id: str = Field(default="a", pattern=r"^[A-Za-z0-9_-]{1,16}$")
    subject: SafeLine = Field(min_length=1, max_length=998)
    html: str = ""
    text: str = ""
    weight: int = Field(default=1, ge=1, le=100)


class BroadcastIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    list_id: str
    from_: EmailAddress = Field(alias="from")
    reply_to: EmailAddress | None = None
    variants: Annotated[list[VariantIn], Field(min_length=1, max_length=5)]


class LaunchIn(BaseModel):
    send_at: datetime | None = None


def _out(b: Broadcast, state: StateDep) -> dict[str, Any]:
    progress = lifecycle.progress(state, b)  # may move sending -> sent, so read it first
    return {
        "id": b.id,
        "name": b.name,
        "list_id": b.list_id,
        "from": b.from_address,
        "reply_to": b.reply_to or None,
        "variants": b.variants,
        "status": b.status,
        "send_at": iso_utc(b.send_at),
        "progress": progress,
    }


def _get(db: DbDep, team_id: str, broadcast_id: str) -> Broadcast:
    row = db.get(Broadcast, broadcast_id)
    if row is None or row.team_id != team_id:
        raise ApiError(404, "broadcast not found")
    return row


def _validate(db: DbDep, team_id: str, body: BroadcastIn) -> None:
    contact_list = db.get(ContactList, body.list_id)
    if contact_list is None or contact_list.team_id != team_id:
        raise ApiError(422, "unknown list", details=[{"path": "list_id", "message": "unknown"}])
    if len({v.id for v in body.variants}) != len(body.variants):
        raise ApiError(
            422, "variant ids must be unique", details=[{"path": "variants", "message": "dup"}]
        )
    for variant in body.variants:
        if not variant.html and not variant.text:
            raise ApiError(
                422,
                "each variant needs html or text",
                details=[{"path": "variants", "message": "empty"}],
            )
        for source in (variant.subject, variant.html, variant.text):
            check_template(source)


def _apply(row: Broadcast, body: BroadcastIn) -> None:
    row.name = body.name
    row.list_id = body.list_id
    row.from_address = body.from_
    row.reply_to = body.reply_to or ""
    row.variants = [v.model_dump() for v in body.variants]


@router.get("", summary="Broadcasts")
def list_broadcasts(
    team_id: str,
    ctx: TeamCampaigns,
    db: DbDep,
    state: StateDep,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    query = select(Broadcast).where(Broadcast.team_id == ctx.team_id)
    return paginate(db, query, Broadcast.id, cursor, limit, lambda b: _out(b, state))


@router.post("", status_code=201, summary="Create a broadcast (draft)")
def create(
    team_id: str,
    body: BroadcastIn,
    ctx: TeamContentWrite,
    db: DbDep,
    state: StateDep,
    response: Response,
) -> dict[str, Any]:
    _validate(db, ctx.team_id, body)
    row = Broadcast(team_id=ctx.team_id)
    _apply(row, body)
    db.add(row)
    db.flush()
    return tagged(response, _out(row, state))


@router.get("/{broadcast_id}", summary="One broadcast with progress (and its ETag)")
def get(
    team_id: str,
    broadcast_id: str,
    ctx: TeamCampaigns,
    db: DbDep,
    state: StateDep,
    response: Response,
) -> dict[str, Any]:
    return tagged(response, _out(_get(db, ctx.team_id, broadcast_id), state))


@router.put("/{broadcast_id}", summary="Edit a draft or scheduled broadcast (If-Match)")
def edit(
    team_id: str,
    broadcast_id: str,
    body: BroadcastIn,
    ctx: TeamContentWrite,
    db: DbDep,
    state: StateDep,
    response: Response,
    if_match: IfMatch = None,
) -> dict[str, Any]:
    row = _get(db, ctx.team_id, broadcast_id)
    check_if_match(if_match, _out(row, state))
    if row.status not in {"draft", "scheduled"}:
        raise ApiError(409, f"a {row.status} broadcast cannot be edited")
    _validate(db, ctx.team_id, body)
    _apply(row, body)
    return tagged(response, _out(row, state))


@router.delete("/{broadcast_id}", summary="Delete a draft")
def delete(team_id: str, broadcast_id: str, ctx: TeamContentWrite, db: DbDep) -> dict[str, Any]:
    row = _get(db, ctx.team_id, broadcast_id)
    if row.status != "draft":
        raise ApiError(409, "only drafts can be deleted (cancel it instead)")
    db.delete(row)
    return {"deleted": broadcast_id}


@router.post("/{broadcast_id}/launch", summary="Send now or at send_at")
def launch(
    team_id: str, broadcast_id: str, body: LaunchIn, ctx: TeamLaunch, db: DbDep, state: StateDep
) -> dict[str, Any]:
    row = _get(db, ctx.team_id, broadcast_id)
    domain = address_domain(row.from_address)
    verified = db.scalar(
        select(Domain.id).where(
            Domain.team_id == ctx.team_id, Domain.name == domain, Domain.status == "verified"
        )
    )
    if verified is None:
        raise ApiError(422, f"sender domain {domain!r} is not verified", "domain_not_verified")
    # Charged at launch: the contacts the fan-out will mail count against the daily cap.
    recipients = db.scalar(
        select(func.count())
        .select_from(Contact)
        .where(Contact.list_id == row.list_id, Contact.status == "subscribed")
    )
    lifecycle.launch(state, row, body.send_at, int(recipients or 0))
    return _out(row, state)


@router.post("/{broadcast_id}/pause", summary="Pause sending")
def pause(
    team_id: str, broadcast_id: str, ctx: TeamLaunch, db: DbDep, state: StateDep
) -> dict[str, Any]:
    row = _get(db, ctx.team_id, broadcast_id)
    lifecycle.pause(state, row)
    return _out(row, state)


@router.post("/{broadcast_id}/resume", summary="Resume sending")
def resume(
    team_id: str, broadcast_id: str, ctx: TeamLaunch, db: DbDep, state: StateDep
) -> dict[str, Any]:
    row = _get(db, ctx.team_id, broadcast_id)
    lifecycle.resume(state, row)
    return _out(row, state)


@router.post("/{broadcast_id}/cancel", summary="Cancel (unsent contacts are skipped)")
def cancel(
    team_id: str, broadcast_id: str, ctx: TeamLaunch, db: DbDep, state: StateDep
) -> dict[str, Any]:
    row = _get(db, ctx.team_id, broadcast_id)
    lifecycle.cancel(state, row)
    return _out(row, state)
