"""The transactional send path: checks, rendering, hand-over to the MTA, scheduling.

Nothing here waits on Kafka or ClickHouse: a message is accepted once it is in the
MTA's Redis stream (or, with `send_at`, in the schedule, which moves it to the
stream atomically when due).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from api.errors import ApiError
from api.models import Domain, Template
from api.schemas import EmailIn
from api.services.idempotency import TTL_SECONDS as IDEMPOTENCY_TTL_SECONDS
from api.services.idempotency import IdempotencyClaim, stored_response
from api.services.ratelimit import team_refusal
from api.services.rendering import (
    Attachment,
    Draft,
    addr_spec,
    address_domain,
    new_message_id,
    render,
    tracked_html,
)
from api.services.templating import render_parts
from api.state import AppState
from kibamail import team_budget
from kibamail.contracts import MessageMapping, OutboundMessage, TrafficKind
from kibamail.intake import (
    MAPPING_TTL_SECONDS,
    QUEUE_SUBMISSION_LUA,
    submission_record,
    submit_async,
)
from kibamail.redis_batching import ready
from kibamail.redis_keys import SLOT_GROUPS, RedisKeys, group_tag, slot_group, team_tag
from kibamail.team_budget import TEAM_BUDGET_LUA

log = logging.getLogger(__name__)


def schedule_key(group: int) -> str:
    """Sorted set of a slot group's scheduled message ids by due time (kibamail.redis_keys:
    the release script runs it with the team's keys, so it lives in the team's slot)."""
    return f"api:scheduled:{group_tag(group)}"


def scheduled_key(team_id: str, message_id: str) -> str:
    """Hash of a parked message (its stream fields, mapping and team)."""
    return f"api:scheduled:{team_tag(team_id)}:{team_id}:{message_id}"


def _member(team_id: str, message_id: str) -> str:
    """A schedule entry: the team id (no ':' in it) and the message id."""
    return f"{team_id}:{message_id}"


def scheduled_count(redis: Any) -> int:
    """Scheduled messages of every group (sync client)."""
    return sum(int(redis.zcard(schedule_key(g))) for g in range(SLOT_GROUPS))


# Atomically claim a due message and queue it for the MTA (kibamail.intake's record, parked
# in the schedule hash by enqueue()) unless the team is no longer ready for the sender
# domain: then the hash stays, marked failed with the reason, and nothing is queued.
# KEYS: schedule, parked hash, mapping, stream, the team's ready flag of the sender domain.
# ARGV: schedule member (team id:message id), mapping TTL, failure reason, how long a
# failed entry stays readable.
_RELEASE_LUA = (
    QUEUE_SUBMISSION_LUA
    + """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
local f = redis.call('HMGET', KEYS[2], 'meta', 'data', 'mapping')
if not f[1] then return 0 end
if redis.call('EXISTS', KEYS[5]) == 0 then
  redis.call('HSET', KEYS[2], 'status', 'failed', 'reason', ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
  return -1
end
queue_submission(KEYS[3], KEYS[4], f[3] or '', ARGV[2], f[1], f[2])
redis.call('DEL', KEYS[2])
return 1
"""
)


def _verified_domains(state: AppState, team_id: str) -> frozenset[str]:
    with state.sessions() as session:
        names = session.scalars(
            select(Domain.name).where(Domain.team_id == team_id, Domain.status == "verified")
        )
        return frozenset(n.lower() for n in names)


async def require_verified_domain(state: AppState, team_id: str, from_address: str) -> str:
    domain = address_domain(from_address)
    verified = state.domain_cache.get(team_id)
    if verified is None or domain not in verified:
        verified = await run_in_threadpool(_verified_domains, state, team_id)
        state.domain_cache.put(team_id, verified)
    if domain not in verified:
        raise ApiError(
            422,
            f"sender domain {domain!r} is not verified for this team",
            "domain_not_verified",
            [{"path": "from", "message": "add and verify the domain first"}],
        )
    return domain


def suppressed_error(suppressed: list[str]) -> ApiError:
    return ApiError(
        422,
        f"recipient(s) on the suppression list: {', '.join(suppressed)}",
        "recipient_suppressed",
        [{"path": "to", "message": f"{r} is suppressed"} for r in suppressed],
    )


async def refuse_suppressed(state: AppState, team_id: str, recipients: list[str]) -> None:
    flags = await state.redis.smismember(
        RedisKeys.suppression(team_id), [r.lower() for r in recipients]
    )
    suppressed = [r for r, flag in zip(recipients, flags, strict=True) if flag]
    if suppressed:
        raise suppressed_error(suppressed)


def _load_template(state: AppState, team_id: str, template_id: str) -> Template | None:
    with state.sessions() as session:
        template = session.get(Template, template_id)
        return template if template and template.team_id == team_id else None


async def apply_template(
    state: AppState, team_id: str, email: EmailIn
) -> tuple[str, str | None, str | None]:
    """(subject, html, text) from the request or its template (sandboxed Jinja2)."""
    if email.template_id is None:
        if not email.subject:
            raise ApiError(
                422, "subject is required", details=[{"path": "subject", "message": "required"}]
            )
        if email.html is None and email.text is None:
            raise ApiError(
                422, "html or text is required", details=[{"path": "html", "message": "required"}]
            )
        return email.subject, email.html, email.text
    template = await run_in_threadpool(_load_template, state, team_id, email.template_id)
    if template is None:
        raise ApiError(
            422, "template not found", details=[{"path": "template_id", "message": "unknown"}]
        )
    subject, html, text = await run_in_threadpool(  # CPU-bound: never on the event loop
        render_parts,
        email.subject or template.subject,
        template.html,
        template.text,
        email.variables,
    )
    if "\r" in subject or "\n" in subject:
        raise ApiError(
            422,
            "rendered subject contains CR/LF",
            details=[{"path": "subject", "message": "CR/LF"}],
        )
    return subject, html, text


def attachments_of(email: EmailIn, max_bytes: int) -> list[Attachment]:
    files = [Attachment(a.filename, a.decoded(), a.content_type) for a in email.attachments]
    if sum(len(f.content) for f in files) > max_bytes:
        raise ApiError(413, f"attachments exceed {max_bytes} bytes in total")
    return files


async def prepare(
    state: AppState,
    team_id: str,
    email: EmailIn,
    *,
    api_key_id: str,
    check_suppression: bool = True,
) -> tuple[OutboundMessage, MessageMapping]:
    """Validate against team state and render; raises ApiError before anything is stored.
    ``check_suppression=False`` when send_now() checks it in the same script as the XADD.
    ``api_key_id`` is the authenticated principal's key ('' for a dashboard session): the
    mapping records it for usage by key, never anything the request says."""
    domain = await require_verified_domain(state, team_id, email.from_)
    recipients = email.recipients()
    if check_suppression:
        await refuse_suppressed(state, team_id, recipients)
    subject, html, text = await apply_template(state, team_id, email)
    message_id = new_message_id(domain)
    if html is not None and (email.track_opens or email.track_clicks):
        html = tracked_html(
            html,
            signer=state.signer,
            public_url=state.settings.api.public_url,
            message_id=message_id,
            team_id=team_id,
            track_opens=email.track_opens,
            track_clicks=email.track_clicks,
        )
    headers = dict(email.headers)
    if email.tags:
        headers["X-Kibamail-Tags"] = ",".join(email.tags)
    draft = Draft(
        message_id=message_id,
        from_address=email.from_,
        to=email.to,
        cc=email.cc,
        reply_to=email.reply_to,
        subject=subject,
        html=html,
        text=text,
        headers=headers,
        attachments=attachments_of(email, int(state.settings.api.max_request_bytes * 0.7)),
    )
    message = OutboundMessage(
        message_id=message_id,
        team_id=team_id,
        kind=TrafficKind.TRANSACTIONAL,
        mail_from=addr_spec(email.from_),
        recipients=recipients,
        data=render(draft),
        source="api",
    )
    mapping = MessageMapping(
        team_id=team_id, kind=TrafficKind.TRANSACTIONAL, tags=email.tags, api_key_id=api_key_id
    )
    return message, mapping


# One round trip for an immediate send: idempotency claim (optional), suppression check,
# the team's pause/bulk gate and send budget (kibamail.team_budget, per recipient), then
# kibamail.intake's hand-over. KEYS: suppression, mapping, stream, team pause flag, bulk
# score, team bucket, team day counter, [idempotency]. ARGV: mapping JSON, mapping TTL,
# meta, data, idempotency record, its TTL, budget_args (8), recipients...
_SEND_NOW_LUA = (
    TEAM_BUDGET_LUA
    + QUEUE_SUBMISSION_LUA
    + """
local idem = #KEYS == 8
if idem then
  local stored = redis.call('GET', KEYS[8])
  if stored then return {2, stored} end
end
local suppressed = {}
for i = 15, #ARGV do
  if redis.call('SISMEMBER', KEYS[1], ARGV[i]) == 1 then suppressed[#suppressed + 1] = ARGV[i] end
end
if #suppressed > 0 then return {1, cjson.encode(suppressed)} end
local refused, why = team_refusal(KEYS[4], KEYS[5], tonumber(ARGV[10]), tonumber(ARGV[13]))
if refused then return {3, cjson.encode({refused, '0', 0, why})} end
local status, tokens, used = take_team_budget(KEYS[6], KEYS[7], tonumber(ARGV[7]),
  tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[11]), tonumber(ARGV[14]))
if status ~= 0 then return {3, cjson.encode({status, tostring(tokens), used, ''})} end
queue_submission(KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
if idem then redis.call('SET', KEYS[8], ARGV[5], 'EX', ARGV[6]) end
return {0, ''}
"""
)


async def send_now(
    state: AppState,
    message: OutboundMessage,
    mapping: MessageMapping,
    claim: IdempotencyClaim | None = None,
) -> tuple[dict[str, Any], bool]:
    """Queue for the MTA now; returns (response, replayed): a replay returns the stored
    response and queues nothing. A suppressed recipient raises 422, a team refusal (paused,
    bulk-scored, over its send budget) 429/403; either stores and charges nothing."""
    response = {"id": message.message_id, "status": "queued"}
    record = submission_record(message, mapping)
    keys = [
        RedisKeys.suppression(message.team_id),
        *record.keys(),
        *team_budget.budget_keys(message.team_id),
    ]
    cost = len(message.recipients)
    args: list[Any] = [
        *record.args(),
        claim.record(response) if claim else b"",
        IDEMPOTENCY_TTL_SECONDS,
        *team_budget.budget_args(
            state.settings.sending, cost, check_team=True, check_bulk=True, take_rate=True
        ),
        *(r.lower() for r in message.recipients),
    ]
    if claim is not None:
        keys.append(claim.redis_key)
    if state.send_now_script is None:
        state.send_now_script = state.redis.register_script(_SEND_NOW_LUA)
    outcome, detail = await state.send_now_script(keys=keys, args=args)
    if outcome == 2:
        assert claim is not None
        return stored_response(detail, claim.fingerprint), True
    if outcome == 1:
        lowered = set(orjson.loads(detail))
        raise suppressed_error([r for r in message.recipients if r.lower() in lowered])
    if outcome == 3:
        refused = team_budget.BudgetResult.parse(orjson.loads(detail), cost)
        raise team_refusal(refused, state.settings.sending)
    return response, False


async def enqueue(
    state: AppState, message: OutboundMessage, mapping: MessageMapping, send_at: datetime | None
) -> str:
    """Hand to the MTA now, or park in the schedule until `send_at`; returns the status."""
    when = send_at.astimezone(UTC) if send_at and send_at.tzinfo else send_at
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if when is None or when <= datetime.now(UTC):
        await submit_async(state.redis, message, mapping)
        return "queued"
    record = submission_record(message, mapping)
    await ready(state.redis)
    pipe = state.redis.pipeline(transaction=True)
    pipe.hset(
        scheduled_key(message.team_id, message.message_id),
        mapping={
            **record.stream_fields(),
            "mapping": record.mapping_json,
            "team_id": message.team_id,
        },
    )
    pipe.zadd(
        schedule_key(slot_group(message.team_id)),
        {_member(message.team_id, message.message_id): when.timestamp()},
    )
    await pipe.execute()
    return "scheduled"


async def cancel_scheduled(state: AppState, team_id: str, message_id: str) -> None:
    parked = scheduled_key(team_id, message_id)  # another team's id names no hash of ours
    owner = await state.redis.hget(parked, "team_id")
    if owner is None or owner.decode() != team_id:
        raise ApiError(404, "no scheduled email with this id (already sent, cancelled or unknown)")
    if not await state.redis.zrem(schedule_key(slot_group(team_id)), _member(team_id, message_id)):
        raise ApiError(409, "the email is already being sent")
    await state.redis.delete(parked)


# A scheduled email refused at release stays readable (status failed, reason) this long.
FAILED_SCHEDULED_TTL_SECONDS = 7 * 24 * 3600


async def release_due(redis: Any, now: float | None = None, limit: int = 500) -> int:
    """Move due scheduled emails to the MTA stream; safe to run in every process.

    The sender domain is checked again at release: if the team is no longer ready for it
    (domain removed, lost to DNS checks or to its owner), the email is not released; its
    schedule hash keeps ``status`` failed and a ``reason`` for FAILED_SCHEDULED_TTL_SECONDS.
    """
    now = now if now is not None else datetime.now(UTC).timestamp()
    released = 0
    for group in range(SLOT_GROUPS):
        released += await _release_group(redis, group, now, limit)
    return released


async def _release_group(redis: Any, group: int, now: float, limit: int) -> int:
    """release_due for one slot group (its schedule and its teams' keys share a slot)."""
    schedule = schedule_key(group)
    due = await redis.zrangebyscore(schedule, "-inf", now, start=0, num=limit)
    released = 0
    for raw in due:
        member = raw.decode()
        team_id, _, message_id = member.partition(":")
        parked = scheduled_key(team_id, message_id)
        _, domain = _scheduled_sender(await redis.hget(parked, "meta"))
        reason = f"sender domain {domain!r} is no longer verified for this team; not sent"
        outcome = int(
            await redis.eval(
                _RELEASE_LUA,
                5,
                schedule,
                parked,
                RedisKeys.message_mapping(team_id, message_id),
                RedisKeys.submission_stream(group),
                RedisKeys.domain_ready(team_id, domain),
                member,
                MAPPING_TTL_SECONDS,
                reason,
                FAILED_SCHEDULED_TTL_SECONDS,
            )
        )
        if outcome < 0:
            log.warning(
                "scheduled email %s of team %s not released: %s", message_id, team_id, reason
            )
        released += max(outcome, 0)
    return released


def _scheduled_sender(meta: bytes | None) -> tuple[str, str]:
    """(team id, sender domain) of a parked message's stream metadata ('' when unreadable,
    which no ready flag matches)."""
    try:
        fields = orjson.loads(meta or b"{}")
        return str(fields.get("team_id", "")), address_domain(str(fields.get("mail_from", "")))
    except (orjson.JSONDecodeError, AttributeError):
        return "", ""


async def scheduler_loop(redis: Any, interval: float = 1.0) -> None:
    """Release scheduled emails and broadcasts; every API process runs one (claims are atomic)."""
    from api.services.broadcast_lifecycle import release_due_broadcasts

    while True:
        try:
            await release_due(redis)
            await release_due_broadcasts(redis)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("releasing scheduled emails failed; retrying")
        await asyncio.sleep(interval)
