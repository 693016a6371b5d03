"""Transactional sending: POST /v1/emails, /v1/emails/batch, cancel a scheduled email."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Request, Response
from pydantic import ValidationError

from api.deps import StateDep, TeamSend
from api.errors import ApiError, field_path
from api.schemas import EmailIn
from api.services.idempotency import MAX_KEY_LENGTH, IdempotencyClaim
from api.services.ratelimit import charge_team
from api.services.send_time import in_future
from api.services.sending import cancel_scheduled, enqueue, prepare, send_now
from api.state import AppState

router = APIRouter(prefix="/v1/emails", tags=["emails"])

MAX_BATCH = 100
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=MAX_KEY_LENGTH)
]


async def _idempotent(
    request: Request,
    response: Response,
    state: StateDep,
    team_id: str,
    key: str | None,
    work: Any,
) -> dict[str, Any]:
    if key is None:
        return dict(await work())
    claim = IdempotencyClaim(state, team_id, key, await request.body())
    replay = await claim.acquire()
    if replay is not None:
        response.headers["Idempotent-Replayed"] = "true"
        return replay
    try:
        result = dict(await work())
    except BaseException:
        await claim.release()
        raise
    await claim.complete(result)
    return result


@router.post("", summary="Send one email")
async def send_email(
    email: EmailIn,
    request: Request,
    response: Response,
    team: TeamSend,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    state: AppState = request.app.state.km  # not a dependency: this is the hot path
    key_id = team.principal.api_key_id or ""  # the authenticated key, '' for a session
    if email.send_at is not None and in_future(email.send_at):

        async def schedule() -> dict[str, Any]:
            message, mapping = await prepare(state, team.team_id, email, api_key_id=key_id)
            # Charged at acceptance: the team's budget covers what it was promised.
            cost = len(message.recipients)
            await charge_team(
                state.redis, team.team_id, state.settings.sending, cost, transactional=True
            )
            status = await enqueue(state, message, mapping, email.send_at)
            return {"id": message.message_id, "status": status}

        return await _idempotent(request, response, state, team.team_id, idempotency_key, schedule)
    # The hot path: idempotency, suppression and the hand-over are one Redis script.
    claim = (
        IdempotencyClaim(state, team.team_id, idempotency_key, await request.body())
        if idempotency_key is not None
        else None
    )
    try:
        message, mapping = await prepare(
            state, team.team_id, email, api_key_id=key_id, check_suppression=False
        )
        result, replayed = await send_now(state, message, mapping, claim)
    except ApiError:
        replay = await claim.replay_if_stored() if claim is not None else None
        if replay is None:
            raise
        result, replayed = replay, True
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return result


BATCH_SCHEMA = {
    "type": "array",
    "items": {"$ref": "#/components/schemas/EmailIn"},
    "minItems": 1,
    "maxItems": MAX_BATCH,
}


@router.post(
    "/batch",
    summary="Send up to 100 emails in one request",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": BATCH_SCHEMA}},
        }
    },
)
async def send_batch(
    emails: Annotated[list[dict[str, Any]], Body()],
    request: Request,
    response: Response,
    team: TeamSend,
    state: StateDep,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    if len(emails) > MAX_BATCH:
        raise ApiError(
            422,
            f"a batch holds at most {MAX_BATCH} emails",
            details=[{"path": "", "message": "too many"}],
        )
    if not emails:
        raise ApiError(422, "a batch needs at least one email")
    parsed: list[EmailIn] = []
    details: list[dict[str, Any]] = []
    for index, raw in enumerate(emails):
        try:
            parsed.append(EmailIn.model_validate(raw))
        except ValidationError as exc:
            details += [
                {"path": f"{index}.{field_path(err['loc'])}", "message": err["msg"]}
                for err in exc.errors()
            ]
    if details:
        raise ApiError(422, "invalid emails in batch (nothing was sent)", details=details)

    async def work() -> dict[str, Any]:
        # Prepare all first: one bad email refuses the whole batch before anything is queued.
        key_id = team.principal.api_key_id or ""
        prepared = [
            await prepare(state, team.team_id, email, api_key_id=key_id) for email in parsed
        ]
        # The whole batch is charged at once (every message x recipient, scheduled ones
        # included): either all of it fits the team's budget or 429 and nothing is queued.
        cost = sum(len(message.recipients) for message, _ in prepared)
        await charge_team(
            state.redis, team.team_id, state.settings.sending, cost, transactional=True
        )
        data = []
        for (message, mapping), email in zip(prepared, parsed, strict=True):
            status = await enqueue(state, message, mapping, email.send_at)
            data.append({"id": message.message_id, "status": status})
        return {"data": data}

    return await _idempotent(request, response, state, team.team_id, idempotency_key, work)


@router.post("/{message_id}/cancel", summary="Cancel a scheduled email")
async def cancel_email(message_id: str, team: TeamSend, state: StateDep) -> dict[str, Any]:
    await cancel_scheduled(state, team.team_id, message_id)
    return {"id": message_id, "status": "cancelled"}
