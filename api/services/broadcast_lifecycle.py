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
from api.jobs.broadcast_fanout import SEND_BROADCAST, progress_key, requeue_parked
from api.jobs.queue import JOB_STREAM, encode_job
from api.models import Broadcast
from api.state import AppState

log = logging.getLogger(__name__)

SCHEDULED_BROADCASTS = "api:broadcasts:scheduled"

# Claim a due broadcast and queue its SendBroadcastJob atomically.
_RELEASE_LUA = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'status', 'sending')
redis.call('XADD', KEYS[3], '*', 'kind', ARGV[2], 'payload', ARGV[3])
return 1
"""


def launch(state: AppState, broadcast: Broadcast, send_at: datetime | None) -> None:
    if broadcast.status not in {"draft", "scheduled"}:
        raise ApiError(409, f"a {broadcast.status} broadcast cannot be launched")
    redis = state.sync_redis
    when = send_at.astimezone(UTC).replace(tzinfo=None) if send_at and send_at.tzinfo else send_at
    broadcast.launched_at = utcnow()
    if when is not None and when > utcnow():
        broadcast.status = "scheduled"
        broadcast.send_at = when
        redis.hset(
            progress_key(broadcast.id),
            mapping={"status": "scheduled", "team_id": broadcast.team_id},
        )
        redis.zadd(SCHEDULED_BROADCASTS, {broadcast.id: when.replace(tzinfo=UTC).timestamp()})
        return
    broadcast.status = "sending"
    pipe = redis.pipeline(transaction=True)
    pipe.zrem(SCHEDULED_BROADCASTS, broadcast.id)
    pipe.hset(
        progress_key(broadcast.id), mapping={"status": "sending", "team_id": broadcast.team_id}
    )
    pipe.xadd(JOB_STREAM, encode_job(SEND_BROADCAST, {"broadcast_id": broadcast.id}))
    pipe.execute()


def pause(state: AppState, broadcast: Broadcast) -> None:
    if broadcast.status != "sending":
        raise ApiError(409, f"only a sending broadcast can be paused (it is {broadcast.status})")
    broadcast.status = "paused"
    state.sync_redis.hset(progress_key(broadcast.id), "status", "paused")


def resume(state: AppState, broadcast: Broadcast) -> None:
    if broadcast.status != "paused":
        raise ApiError(409, f"only a paused broadcast can be resumed (it is {broadcast.status})")
    broadcast.status = "sending"
    state.sync_redis.hset(progress_key(broadcast.id), "status", "sending")
    requeue_parked(state.sync_redis, broadcast.id)


def cancel(state: AppState, broadcast: Broadcast) -> None:
    if broadcast.status in {"sent", "cancelled"}:
        raise ApiError(409, f"a {broadcast.status} broadcast cannot be cancelled")
    broadcast.status = "cancelled"
    redis = state.sync_redis
    redis.zrem(SCHEDULED_BROADCASTS, broadcast.id)
    redis.hset(progress_key(broadcast.id), "status", "cancelled")
    redis.delete(f"{progress_key(broadcast.id)}:parked")


def progress(state: AppState, broadcast: Broadcast) -> dict[str, Any]:
    raw = state.sync_redis.hgetall(progress_key(broadcast.id))
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
    }


async def release_due_broadcasts(redis: Any, now: float | None = None) -> int:
    """Start scheduled broadcasts whose time has come (any API process may do it)."""
    import orjson

    now = now if now is not None else datetime.now(UTC).timestamp()
    due = await redis.zrangebyscore(SCHEDULED_BROADCASTS, "-inf", now, start=0, num=100)
    started = 0
    for raw in due:
        broadcast_id = raw.decode()
        started += int(
            await redis.eval(
                _RELEASE_LUA,
                3,
                SCHEDULED_BROADCASTS,
                progress_key(broadcast_id),
                JOB_STREAM,
                broadcast_id,
                SEND_BROADCAST,
                orjson.dumps({"broadcast_id": broadcast_id}),
            )
        )
    return started
