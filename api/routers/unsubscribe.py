"""Unsubscribe: RFC 8058 one-click POST and a plain page (GET shows, POST confirms).

GET never unsubscribes: mail scanners prefetch links. The token is HMAC-signed, so a
forged or edited link is refused without any change.

An unsubscribe marks the address `unsubscribed` on every list of the team AND adds it to
the team's suppression set: per-contact broadcast jobs already queued (or parked by a
pause) check that set right before the hand-over, and the MTA's Suppression policy checks
it again at delivery, so nothing already in flight reaches the address. The set is
team-wide (transactional mail to the address is refused too, 422 recipient_suppressed);
the team may lift it with DELETE .../suppressions/{email}.
"""

from __future__ import annotations

import html

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select, update
from starlette.concurrency import run_in_threadpool

from api.db import utcnow
from api.deps import StateDep
from api.errors import ApiError
from api.models import Contact
from api.services.event_producer import add_to_outbox_sync
from api.services.rendering import UNSUBSCRIBE_PURPOSE
from api.services.security import TokenError
from kibamail.contracts import Topic, UnsubscribeEvent
from kibamail.redis_keys import RedisKeys

router = APIRouter(tags=["tracking"])

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Unsubscribe</title></head>
<body><main><h1>{title}</h1><p>{text}</p>{form}</main></body></html>"""


def _decode(state: StateDep, token: str) -> tuple[str, str, str, str]:
    try:
        team_id, contact_id, email, message_id = state.signer.loads(UNSUBSCRIBE_PURPOSE, token)
    except (TokenError, ValueError) as exc:
        raise ApiError(404, "unknown unsubscribe link") from exc
    return team_id, contact_id, email, message_id


def _unsubscribe(state: StateDep, token: str, method: str) -> str:
    team_id, contact_id, email, message_id = _decode(state, token)
    with state.sessions() as db, db.begin():
        contact = db.scalar(
            select(Contact).where(Contact.id == contact_id, Contact.team_id == team_id)
        )
        if contact is not None:
            # The person, not just one list: every list of this team with this address.
            db.execute(
                update(Contact)
                .where(Contact.team_id == team_id, Contact.email == contact.email)
                .values(status="unsubscribed", confirmed_at=contact.confirmed_at or utcnow())
            )
    state.sync_redis.sadd(RedisKeys.marketing_suppression(team_id), email.lower())
    event = UnsubscribeEvent(
        team_id=team_id, message_id=message_id, contact_id=contact_id, email=email, method=method
    )
    add_to_outbox_sync(state.sync_redis, Topic.UNSUBSCRIBES, event, key=team_id)
    return email


@router.post("/u/{token}", summary="One-click unsubscribe (RFC 8058) or page confirmation")
async def unsubscribe(token: str, request: Request, state: StateDep) -> HTMLResponse:
    body = (await request.body()).decode(errors="replace")
    method = "one_click" if "List-Unsubscribe=One-Click" in body else "page"
    email = await run_in_threadpool(_unsubscribe, state, token, method)
    page = _PAGE.format(
        title="You are unsubscribed",
        text=f"{html.escape(email)} will get no more of these emails.",
        form="",
    )
    return HTMLResponse(page)


@router.get("/u/{token}", summary="Unsubscribe page", response_class=HTMLResponse)
def unsubscribe_page(token: str, state: StateDep) -> HTMLResponse:
    _team, _contact, email, _message = _decode(state, token)
    form = (
        f'<form method="post" action="/u/{html.escape(token)}">'
        '<button type="submit">Unsubscribe</button></form>'
    )
    page = _PAGE.format(
        title="Unsubscribe", text=f"Stop emails to {html.escape(email)}?", form=form
    )
    return HTMLResponse(page)
