"""Contact lists, contacts, custom fields, double opt-in, CSV import, suppressions.

Consent: only the contact moves itself to `subscribed` (the double opt-in link). Editing
a `pending` or `unsubscribed` contact to `subscribed` is an Administrator's act, and only
with ``?confirmed_consent=true`` (consent collected elsewhere, like the import's
``already_confirmed``); anyone else gets 403 and the contact is unchanged. A CSV import
never changes an existing contact (its row is reported as already on the list).
"""

from __future__ import annotations

import html
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field, StrictBool
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from api.db import utcnow
from api.deps import DbDep, StateDep, TeamContactsRead, TeamContentWrite
from api.errors import ApiError
from api.models import Contact, ContactList, CustomField, Role
from api.routers.etag import IfMatch, check_if_match, tagged
from api.routers.pagination import Cursor, Limit, paginate
from api.schemas import EmailAddress, iso_utc
from api.services.contacts_import import import_csv
from api.services.notifications import CONFIRM_PURPOSE, send_confirmation
from api.services.security import TokenError
from kibamail.redis_keys import RedisKeys

router = APIRouter(prefix="/v1/teams/{team_id}", tags=["contacts"])
public_router = APIRouter(tags=["contacts"])
CONFIRM_MAX_AGE = 7 * 24 * 3600


class ListIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    double_opt_in: StrictBool = False


class ContactIn(BaseModel):
    email: EmailAddress
    first_name: str = Field(default="", max_length=200)
    last_name: str = Field(default="", max_length=200)
    fields: dict[str, str | int | float | bool | None] = Field(default_factory=dict, max_length=100)


class ContactPatch(BaseModel):
    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    fields: dict[str, str | int | float | bool | None] | None = None
    status: str | None = Field(default=None, pattern="^(subscribed|unsubscribed)$")


class FieldIn(BaseModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    kind: str = Field(default="text", pattern="^(text|number|date|boolean)$")


class SuppressionIn(BaseModel):
    email: EmailAddress


def contact_out(c: Contact) -> dict[str, Any]:
    return {
        "id": c.id,
        "list_id": c.list_id,
        "email": c.email,
        "first_name": c.first_name,
        "last_name": c.last_name,
        "fields": c.fields,
        "status": c.status,
        "created_at": iso_utc(c.created_at),
    }


def _list(db: DbDep, team_id: str, list_id: str) -> ContactList:
    row = db.get(ContactList, list_id)
    if row is None or row.team_id != team_id:
        raise ApiError(404, "list not found")
    return row


def _contact(db: DbDep, team_id: str, contact_id: str) -> Contact:
    row = db.get(Contact, contact_id)
    if row is None or row.team_id != team_id:
        raise ApiError(404, "contact not found")
    return row


def _known_fields(db: DbDep, team_id: str) -> set[str]:
    return set(db.scalars(select(CustomField.name).where(CustomField.team_id == team_id)))


def _check_fields(db: DbDep, team_id: str, fields: dict[str, Any]) -> None:
    unknown = sorted(set(fields) - _known_fields(db, team_id))
    if unknown:
        raise ApiError(
            422,
            f"unknown custom fields: {', '.join(unknown)}",
            details=[{"path": f"fields.{name}", "message": "define it first"} for name in unknown],
        )


@router.get("/lists", summary="Contact lists")
def lists(
    team_id: str, ctx: TeamContactsRead, db: DbDep, cursor: Cursor = None, limit: Limit = 100
) -> dict[str, Any]:
    query = select(ContactList).where(ContactList.team_id == ctx.team_id)
    return paginate(
        db,
        query,
        ContactList.id,
        cursor,
        limit,
        lambda r: {"id": r.id, "name": r.name, "double_opt_in": r.double_opt_in},
    )


@router.post("/lists", status_code=201, summary="Create a list")
def new_list(team_id: str, body: ListIn, ctx: TeamContentWrite, db: DbDep) -> dict[str, Any]:
    row = ContactList(team_id=ctx.team_id, name=body.name, double_opt_in=body.double_opt_in)
    db.add(row)
    db.flush()
    return {"id": row.id, "name": row.name, "double_opt_in": row.double_opt_in}


@router.delete("/lists/{list_id}", summary="Delete a list and its contacts")
def delete_list(team_id: str, list_id: str, ctx: TeamContentWrite, db: DbDep) -> dict[str, Any]:
    db.delete(_list(db, ctx.team_id, list_id))
    return {"deleted": list_id}


@router.get("/fields", summary="Custom fields")
def fields(
    team_id: str, ctx: TeamContactsRead, db: DbDep, cursor: Cursor = None, limit: Limit = 100
) -> dict[str, Any]:
    """Ordered by name (unique per team), which is also the cursor."""
    return paginate(
        db,
        select(CustomField).where(CustomField.team_id == ctx.team_id),
        CustomField.name,
        cursor,
        limit,
        lambda f: {"id": f.id, "name": f.name, "kind": f.kind},
    )


@router.post("/fields", status_code=201, summary="Define a custom field")
def new_field(team_id: str, body: FieldIn, ctx: TeamContentWrite, db: DbDep) -> dict[str, Any]:
    if body.name in _known_fields(db, ctx.team_id):
        raise ApiError(409, "field already exists")
    row = CustomField(team_id=ctx.team_id, name=body.name, kind=body.kind)
    db.add(row)
    db.flush()
    return {"id": row.id, "name": row.name, "kind": row.kind}


@router.get("/lists/{list_id}/contacts", summary="Contacts of a list")
def contacts(
    team_id: str,
    list_id: str,
    ctx: TeamContactsRead,
    db: DbDep,
    cursor: Cursor = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    _list(db, ctx.team_id, list_id)
    query = select(Contact).where(Contact.list_id == list_id, Contact.team_id == ctx.team_id)
    return paginate(db, query, Contact.id, cursor, limit, contact_out)


@router.post("/lists/{list_id}/contacts", status_code=201, summary="Add a contact")
def add_contact(
    team_id: str,
    list_id: str,
    body: ContactIn,
    ctx: TeamContentWrite,
    db: DbDep,
    state: StateDep,
    response: Response,
) -> dict[str, Any]:
    contact_list = _list(db, ctx.team_id, list_id)
    _check_fields(db, ctx.team_id, body.fields)
    email = body.email.lower()
    if db.scalar(select(Contact.id).where(Contact.list_id == list_id, Contact.email == email)):
        raise ApiError(409, "contact already on this list")
    row = Contact(
        team_id=ctx.team_id,
        list_id=list_id,
        email=email,
        first_name=body.first_name,
        last_name=body.last_name,
        fields=body.fields,
        status="pending" if contact_list.double_opt_in else "subscribed",
    )
    db.add(row)
    db.flush()
    out = tagged(response, contact_out(row))
    if contact_list.double_opt_in:
        send_confirmation(  # 429 over the team's cap: the contact is rolled back too
            state.sync_redis,
            state.settings,
            team_id=ctx.team_id,
            contact_id=row.id,
            email=email,
            list_name=contact_list.name,
            token=state.signer.dumps_timed(CONFIRM_PURPOSE, row.id),
        )
        out["confirmation_sent"] = True
    return out


@router.get("/contacts/{contact_id}", summary="One contact (with its ETag)")
def get_contact(
    team_id: str, contact_id: str, ctx: TeamContactsRead, db: DbDep, response: Response
) -> dict[str, Any]:
    return tagged(response, contact_out(_contact(db, ctx.team_id, contact_id)))


@router.patch("/contacts/{contact_id}", summary="Update a contact (If-Match: no lost update)")
def patch_contact(
    team_id: str,
    contact_id: str,
    body: ContactPatch,
    ctx: TeamContentWrite,
    db: DbDep,
    response: Response,
    if_match: IfMatch = None,
    confirmed_consent: Annotated[
        bool,
        Query(
            description="Administrators only: the contact gave consent elsewhere; needed to "
            "move a pending or unsubscribed contact to `subscribed` (its address stays on the "
            "suppression list until removed there)."
        ),
    ] = False,
) -> dict[str, Any]:
    row = _contact(db, ctx.team_id, contact_id)
    check_if_match(if_match, contact_out(row))
    resubscribe = body.status == "subscribed" and row.status != "subscribed"
    if resubscribe and (ctx.role != Role.ADMIN or not confirmed_consent):
        raise ApiError(
            403,
            f"a {row.status} contact becomes subscribed only through its own "
            "confirmation, or by an Administrator with ?confirmed_consent=true",
            details=[{"path": "status", "message": "consent required"}],
        )
    if body.fields is not None:
        _check_fields(db, ctx.team_id, body.fields)
        row.fields = {**row.fields, **body.fields}
    for name in ("first_name", "last_name", "status"):
        value = getattr(body, name)
        if value is not None:
            setattr(row, name, value)
    return tagged(response, contact_out(row))


@router.delete("/contacts/{contact_id}", summary="Delete a contact")
def delete_contact(
    team_id: str, contact_id: str, ctx: TeamContentWrite, db: DbDep, if_match: IfMatch = None
) -> dict[str, Any]:
    row = _contact(db, ctx.team_id, contact_id)
    check_if_match(if_match, contact_out(row))
    db.delete(row)
    return {"deleted": contact_id}


@router.post("/lists/{list_id}/import", summary="Import CSV (streamed; per-row error report)")
async def import_contacts(
    team_id: str,
    list_id: str,
    request: Request,
    ctx: TeamContentWrite,
    state: StateDep,
    already_confirmed: Annotated[
        bool,
        Query(
            description="Double opt-in list only, Administrators only: the contacts already "
            "confirmed elsewhere; import them `subscribed` and send no confirmation email."
        ),
    ] = False,
) -> dict[str, Any]:
    def check_list() -> tuple[set[str], bool, str]:
        with state.sessions() as db:
            row = _list(db, ctx.team_id, list_id)
            return _known_fields(db, ctx.team_id), row.double_opt_in, row.name

    known, double_opt_in, list_name = await run_in_threadpool(check_list)
    if already_confirmed and ctx.role != Role.ADMIN:
        raise ApiError(403, "only an Administrator may import contacts as already confirmed")
    needs_confirmation = double_opt_in and not already_confirmed
    return await import_csv(
        state,
        ctx.team_id,
        list_id,
        known,
        request.stream(),
        confirm_list_name=list_name if needs_confirmation else None,
    )


@router.get(
    "/suppressions",
    summary="Suppressed addresses: all mail (bounces, complaints, manual) or marketing only",
)
async def suppressions(
    team_id: str,
    ctx: TeamContactsRead,
    state: StateDep,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,20}$")] = None,
    limit: Limit = 100,
    kind: Literal["all", "marketing"] = "all",
) -> dict[str, Any]:
    """``kind=all``: no mail reaches these addresses; ``kind=marketing``: they unsubscribed,
    so broadcasts skip them while transactional mail still reaches them."""
    start = int(cursor) if cursor and cursor.isdigit() else 0
    key = (
        RedisKeys.marketing_suppression(ctx.team_id)
        if kind == "marketing"
        else RedisKeys.suppression(ctx.team_id)
    )
    next_cursor, members = await state.redis.sscan(key, start, count=limit)
    return {
        "data": sorted(m.decode() for m in members),
        "next_cursor": str(next_cursor) if next_cursor else None,
    }


@router.post("/suppressions", status_code=201, summary="Suppress an address")
async def suppress(
    team_id: str, body: SuppressionIn, ctx: TeamContentWrite, state: StateDep
) -> dict[str, Any]:
    await state.redis.sadd(RedisKeys.suppression(ctx.team_id), body.email.lower())
    return {"email": body.email.lower(), "suppressed": True}


@router.delete("/suppressions/{email}", summary="Remove an address from the suppression list")
async def unsuppress(
    team_id: str, email: str, ctx: TeamContentWrite, state: StateDep
) -> dict[str, Any]:
    removed = await state.redis.srem(RedisKeys.suppression(ctx.team_id), email.lower())
    removed += await state.redis.srem(RedisKeys.marketing_suppression(ctx.team_id), email.lower())
    if not removed:
        raise ApiError(404, "address is not suppressed")
    return {"email": email.lower(), "suppressed": False}


def _confirm_target(token: str, db: DbDep, state: StateDep) -> Contact:
    try:
        contact_id = state.signer.loads_timed(CONFIRM_PURPOSE, token, CONFIRM_MAX_AGE)
    except TokenError as exc:
        raise ApiError(400, f"confirmation link refused: {exc}", "invalid_token") from exc
    row = db.get(Contact, contact_id)
    if row is None:
        raise ApiError(404, "contact no longer exists")
    return row


_CONFIRM_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
</head><body><main><h1>{title}</h1><p>{text}</p>{form}</main></body></html>"""


@public_router.get(
    "/confirm/{token}", summary="Double opt-in confirmation page", response_class=HTMLResponse
)
def confirm_page(token: str, db: DbDep, state: StateDep) -> HTMLResponse:
    """Shows a button and changes nothing: mail scanners prefetch links in emails."""
    row = _confirm_target(token, db, state)
    if row.status != "pending":
        text = f"{html.escape(row.email)} is already {html.escape(row.status)}."
        return HTMLResponse(_CONFIRM_PAGE.format(title="Subscription", text=text, form=""))
    form = (
        f'<form method="post" action="/confirm/{html.escape(token)}">'
        '<button type="submit">Confirm my subscription</button></form>'
    )
    text = f"Confirm that {html.escape(row.email)} wants these emails."
    return HTMLResponse(_CONFIRM_PAGE.format(title="Confirm subscription", text=text, form=form))


@public_router.post("/confirm/{token}", summary="Confirm a double opt-in subscription")
def confirm(token: str, db: DbDep, state: StateDep) -> dict[str, Any]:
    row = _confirm_target(token, db, state)
    if row.status == "pending":
        row.status = "subscribed"
        row.confirmed_at = utcnow()
    return {"email": row.email, "status": row.status}
