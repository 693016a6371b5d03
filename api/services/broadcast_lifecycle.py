"""Broadcast lifecycle: launch (now or scheduled), pause, resume, cancel, progress.

The database row is what people see; the Redis progress hash is what workers obey
(read per job, so a pause takes effect within one job).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from api.db import utcnow
from api.errors import ApiError
from api.jobs.broadcast_fanout import SEND_BROADCAST, parked_key, progress_key, requeue_parked
from api.jobs.queue import encode_job, job_stream
from api.models import Broadcast
from api.services.ratelimit import team_refusal
from api.state import AppState
from kibamail import team_budget
from kibamail.redis_keys import SLOT_GROUPS, RedisKeys, group_tag, slot_group
from kibamail.team_budget import TEAM_BUDGET_LUA

log = logging.getLogger(__name__)


def scheduled_broadcasts(group: int) -> str:
    """Sorted set of a slot group's scheduled broadcasts ("<team id>:<broadcast id>" by
    due time): released with the team's progress hash and job stream, one slot."""
    return f"api:broadcasts:scheduled:{group_tag(group)}"


def _member(broadcast: Broadcast) -> str:
    return f"{broadcast.team_id}:{broadcast.id}"


def _send_job(team_id: str, broadcast_id: str) -> dict[str, bytes]:
    return encode_job(SEND_BROADCAST, {"broadcast_id": broadcast_id, "team_id": team_id})


# Claim a due broadcast and queue its SendBroadcastJob atomically.
_RELEASE_LUA = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'status', 'sending')
redis.call('XADD', KEYS[3], '*', 'kind', ARGV[2], 'payload', ARGV[3])
return 1
"""

# Reserve a broadcast's recipients in today's team counter at launch (kibamail.team_budget;
# daily cap and pause only: broadcasts are marketing, paced by the job queue and the MTA,
# so neither the per-second bucket nor the transactional bulk gate applies). A re-launch
# of a scheduled broadcast first gives its earlier reservation back. A refusal changes
# nothing. KEYS: budget_keys(), progress hash, earlier reservation's day counter.
# ARGV: budget_args() (8), earlier reservation, today (YYYYMMDD).
_RESERVE_LUA = (
    TEAM_BUDGET_LUA
    + """
local refused, why = team_refusal(KEYS[1], KEYS[2], 0, 0)
if refused then return {refused, '0', 0, why} end
local old = tonumber(ARGV[9])
local credit = old > 0 and redis.call('EXISTS', KEYS[6]) == 1
if credit then redis.call('DECRBY', KEYS[6], old) end
local status, tokens, used = take_team_budget(KEYS[3], KEYS[4], tonumber(ARGV[1]),
  tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[5]), 0)
if status ~= 0 then
  if credit then redis.call('INCRBY', KEYS[6], old) end
  return {status, tostring(tokens), used, ''}
end
redis.call('HSET', KEYS[5], 'reserved', ARGV[5], 'reserved_day', ARGV[10])
return {0, tostring(tokens), used, ''}
"""
)

# Give a scheduled broadcast's reservation back (cancelled before it was released).
# KEYS: progress hash, the reservation's day counter.
_RELEASE_RESERVATION_LUA = """
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0') or 0
redis.call('HDEL', KEYS[1], 'reserved', 'reserved_day')
if reserved > 0 and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('DECRBY', KEYS[2], reserved)
end
return reserved
"""


def reserve_recipients(state: AppState, broadcast: Broadcast, recipients: int) -> None:
    """Charge the broadcast's recipients to the team's daily cap, or refuse the launch:
    429 daily_cap_reached (it does not fit what is left today), 422 exceeds_daily_cap
    (larger than the whole cap), 429 team_paused. The fan-out hands over at most
    `reserved` contacts (the progress hash) without charging again."""
    redis = state.sync_redis
    limits = state.settings.sending
    progress_hash = progress_key(broadcast.team_id, broadcast.id)
    earlier = redis.hmget(progress_hash, "reserved", "reserved_day")
    old, old_day = int(earlier[0] or 0), (earlier[1] or b"").decode()
    today = team_budget.utc_day()
    keys = [
        *team_budget.budget_keys(broadcast.team_id, today),
        progress_hash,
        RedisKeys.team_daily_sent(broadcast.team_id, old_day or today),
    ]
    args = team_budget.budget_args(
        limits, recipients, check_team=True, check_bulk=False, take_rate=False
    )
    answer = redis.eval(_RESERVE_LUA, len(keys), *keys, *args, old, today)
    result = team_budget.BudgetResult.parse(answer, recipients)
    if result.status != team_budget.OK:
        error = team_refusal(result, limits)
        error.message = f"broadcast of {recipients} recipients refused at launch: {error.message}"
        raise error


def launch(
    state: AppState, broadcast: Broadcast, send_at: datetime | None, recipients: int = 0
) -> None:
    """Start (or schedule) a broadcast to `recipients` contacts, charged at launch."""
    if broadcast.status not in {"draft", "scheduled"}:
        raise ApiError(409, f"a {broadcast.status} broadcast cannot be launched")
    reserve_recipients(state, broadcast, recipients)
    redis = state.sync_redis
    when = send_at.astimezone(UTC).replace(tzinfo=None) if send_at and send_at.tzinfo else send_at
    broadcast.launched_at = utcnow()
    if when is not None and when > utcnow():
        broadcast.status = "scheduled"
        broadcast.send_at = when
        redis.hset(
            progress_key(broadcast.team_id, broadcast.id),
            mapping={"status": "scheduled", "team_id": broadcast.team_id},
        )
        redis.zadd(
            scheduled_broadcasts(slot_group(broadcast.team_id)),
            {_member(broadcast): when.replace(tzinfo=UTC).timestamp()},
        )
        return
    broadcast.status = "sending"
    pipe = redis.pipeline(transaction=True)
    group = slot_group(broadcast.team_id)
    pipe.zrem(scheduled_broadcasts(group), _member(broadcast))
    pipe.hset(
        progress_key(broadcast.team_id, broadcast.id),
        mapping={"status": "sending", "team_id": broadcast.team_id},
    )
    pipe.xadd(job_stream(group), _send_job(broadcast.team_id, broadcast.id))
    pipe.execute()


def pause(state: AppState, broadcast: Broadcast) -> None:
    if broadcast.status != "sending":
        raise ApiError(409, f"only a sending broadcast can be paused (it is {broadcast.status})")
    broadcast.status = "paused"
    state.sync_redis.hset(progress_key(broadcast.team_id, broadcast.id), "status", "paused")


def resume(state: AppState, broadcast: Broadcast) -> None:
    if broadcast.status != "paused":
        raise ApiError(409, f"only a paused broadcast can be resumed (it is {broadcast.status})")
    broadcast.status = "sending"
    state.sync_redis.hset(progress_key(broadcast.team_id, broadcast.id), "status", "sending")
    requeue_parked(state.sync_redis, broadcast.team_id, broadcast.id)


def cancel(state: AppState, broadcast: Broadcast) -> None:
    if broadcast.status in {"sent", "cancelled"}:
        raise ApiError(409, f"a {broadcast.status} broadcast cannot be cancelled")
    broadcast.status = "cancelled"
    redis = state.sync_redis
    progress = progress_key(broadcast.team_id, broadcast.id)
    schedule = scheduled_broadcasts(slot_group(broadcast.team_id))
    if redis.zrem(schedule, _member(broadcast)):  # never released: nothing handed over
        day = (redis.hget(progress, "reserved_day") or b"").decode()
        if day:
            counter = RedisKeys.team_daily_sent(broadcast.team_id, day)
            redis.eval(_RELEASE_RESERVATION_LUA, 2, progress, counter)
    redis.hset(progress, "status", "cancelled")
    redis.delete(parked_key(broadcast.team_id, broadcast.id))


def progress(state: AppState, broadcast: Broadcast) -> dict[str, Any]:
    raw = state.sync_redis.hgetall(progress_key(broadcast.team_id, broadcast.id))
    values = {k.decode(): v.decode() for k, v in raw.items()}
    total, sent, skipped, failed = (
        int(values.get(k, 0)) for k in ("total", "sent", "skipped", "failed")
    )
    if broadcast.status == "scheduled" and values.get("status") == "sending":
        broadcast.status = "sending"
    if broadcast.status == "sending" and total and sent + skipped + failed >= total:
        broadcast.status = "sent"
    return {
        "total": total,
        "sent": sent,
        "skipped": skipped,
        "failed": failed,
        "pending": max(0, total - sent - skipped - failed),
        "fanout_failed": values.get("fanout_failed") == "1",
        # Why the broadcast stopped (api.jobs.broadcast_fanout.fail_broadcast), if it did.
        "failure_reason": values.get("failure_reason") or None,
    }


async def release_due_broadcasts(redis: Any, now: float | None = None) -> int:
    """Start scheduled broadcasts whose time has come (any API process may do it)."""
    now = now if now is not None else datetime.now(UTC).timestamp()
    started = 0
    for group in range(SLOT_GROUPS):
        schedule = scheduled_broadcasts(group)
        due = await redis.zrangebyscore(schedule, "-inf", now, start=0, num=100)
        for raw in due:
            member = raw.decode()
            team_id, _, broadcast_id = member.partition(":")
            job = _send_job(team_id, broadcast_id)
            started += int(
                await redis.eval(
                    _RELEASE_LUA,
                    3,
                    schedule,
                    progress_key(team_id, broadcast_id),
                    job_stream(group),
                    member,
                    job["kind"],
                    job["payload"],
                )
            )
    return started
