"""Tracking hits: each is in the durable API outbox (one XADD) before it is answered; the
outbox publisher takes it to Kafka (never waits on Kafka or ClickHouse)."""

from __future__ import annotations

import base64

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from api.deps import StateDep
from api.errors import ApiError
from api.services.event_producer import event_outbox
from api.services.rendering import CLICK_PURPOSE, OPEN_PURPOSE
from api.services.security import Signer, TokenError
from kibamail.contracts import EmailClickEvent, EmailOpenEvent, Topic

router = APIRouter(prefix="/t", tags=["tracking"], include_in_schema=True)

PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
NO_CACHE_HEADERS = {"Cache-Control": "no-store, no-cache, must-revalidate, max-age=0"}


def _client(request: Request) -> tuple[str, str]:
    ip = request.client.host if request.client else ""
    return ip, request.headers.get("user-agent", "")[:1000]


def open_event(signer: Signer, token: str, ip: str, user_agent: str) -> EmailOpenEvent:
    """The open a pixel token stands for (shared with api.fastpath.asgi); forged → 404."""
    try:
        message_id, team_id = signer.loads(OPEN_PURPOSE, token.removesuffix(".gif"))
        return EmailOpenEvent(team_id=team_id, message_id=message_id, ip=ip, user_agent=user_agent)
    except (TokenError, ValueError) as exc:
        raise ApiError(404, "unknown tracking token") from exc


def click_event(signer: Signer, token: str, ip: str, user_agent: str) -> EmailClickEvent:
    """The click a link token stands for (shared with api.fastpath.asgi); only http(s) targets."""
    try:
        message_id, team_id, url, link_index = signer.loads(CLICK_PURPOSE, token)
    except (TokenError, ValueError) as exc:
        raise ApiError(404, "unknown tracking link") from exc
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        raise ApiError(400, "link target is not an http(s) URL")
    try:
        return EmailClickEvent(
            team_id=team_id,
            message_id=message_id,
            ip=ip,
            user_agent=user_agent,
            url=url,
            link_id=str(link_index),
        )
    except ValueError as exc:
        raise ApiError(404, "unknown tracking link") from exc


@router.get("/o/{token}", summary="Open pixel", response_class=Response)
async def open_pixel(token: str, request: Request, state: StateDep) -> Response:
    event = open_event(state.signer, token, *_client(request))
    await event_outbox(state).add(Topic.EMAIL_OPENS, event, key=event.message_id)
    return Response(PIXEL_GIF, media_type="image/gif", headers=NO_CACHE_HEADERS)


@router.get(
    "/c/{token}",
    summary="Click redirect",
    response_class=RedirectResponse,
    status_code=302,
    responses={302: {"description": "To the link's target (the `Location` header)."}},
)
async def click(token: str, request: Request, state: StateDep) -> RedirectResponse:
    event = click_event(state.signer, token, *_client(request))
    await event_outbox(state).add(Topic.EMAIL_CLICKS, event, key=event.message_id)
    return RedirectResponse(event.url, status_code=302, headers=NO_CACHE_HEADERS)
