"""The durable audit of pause decisions (lift, confirm, review request).

kibamail.team_pauses queues one ``TeamPauseAuditEvent`` per decision on the API's event
outbox in the same MULTI as the decision (-> Kafka ``team_pause_audit`` -> the sink ->
``raw_team_pause_audit``, one writer), and keeps the capped Redis list as the recent view.
``history`` reads the ClickHouse rows and adds the Redis entries the sink has not written
yet (``durable: false``), so a decision shows at once and survives a Redis flush.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from kibamail.contracts import ClickHouseTable, TeamPauseAuditEvent
from kibamail.redis_keys import RedisKeys

AUDIT_NAMESPACE = uuid.UUID("5b0c2f7e-3d1a-4e8b-9c6f-2a7d9e4b1c30")
HISTORY_LIMIT = 200
_COLUMNS = "event_id, action, actor, reason, occurred_at, pause_event_id, pause_score, pause_reason"


def audit_event(
    team_id: str, action: str, actor: str, reason: str, at: float, flag: dict[str, Any]
) -> TeamPauseAuditEvent:
    """The decision as an event; its id is derived from team, action, pause and time, so a
    retried decision (same inputs) is one row."""
    pause_id = str(flag.get("event_id", ""))
    return TeamPauseAuditEvent(
        event_id=uuid.uuid5(AUDIT_NAMESPACE, f"{team_id}:{action}:{pause_id}:{at!r}").hex,
        team_id=team_id,
        occurred_at=datetime.fromtimestamp(at, UTC),
        action=action,
        actor=actor[:200] or "-",
        reason=reason,
        pause_event_id=pause_id,
        pause_score=float(flag.get("score", 0.0) or 0.0),
        pause_reason=str(flag.get("reason", "")),
    )


def audit_time(at: float) -> str:
    """A decision's time as history sorts it: microseconds (the table keeps them), so
    decisions taken within one millisecond still read back in the order they were taken."""
    return _iso(datetime.fromtimestamp(at, UTC))


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=UTC)
        return stamp.isoformat(timespec="microseconds").replace("+00:00", "Z")
    return str(value)


def durable_entries(
    ch: Any, database: str, team_id: str, limit: int = HISTORY_LIMIT
) -> list[dict[str, Any]]:
    """The team's rows in ``raw_team_pause_audit``, newest first (team bound server-side)."""
    result = ch.query(
        f"SELECT {_COLUMNS} FROM {database}.{ClickHouseTable.TEAM_PAUSE_AUDIT.value} FINAL "
        "WHERE team_id = {team:String} ORDER BY occurred_at DESC, event_id LIMIT {n:UInt32}",
        parameters={"team": team_id, "n": limit},
    )
    return [
        {
            "event_id": row["event_id"],
            "action": row["action"],
            "by": row["actor"],
            "reason": row["reason"],
            "at": _iso(row["occurred_at"]),
            "pause_event_id": row["pause_event_id"],
            "pause_score": float(row["pause_score"]),
            "pause_reason": row["pause_reason"],
            "durable": True,
        }
        for row in result.named_results()
    ]


def recent_entries(redis: Any, team_id: str, limit: int = HISTORY_LIMIT) -> list[dict[str, Any]]:
    """The Redis view, in the durable rows' shape (a review's note is its reason)."""
    entries = []
    for raw in redis.lrange(RedisKeys.team_pause_audit(team_id), 0, limit - 1):
        entry = orjson.loads(raw)
        pause = entry.get("pause") or {}
        entries.append(
            {
                "event_id": entry.get("event_id", ""),
                "action": entry.get("action", ""),
                "by": entry.get("by", ""),
                "reason": entry.get("reason", entry.get("note", "")),
                "at": entry.get("at", ""),
                "pause_event_id": entry.get("pause_event_id", pause.get("event_id", "")),
                "pause_score": float(entry.get("pause_score", pause.get("score", 0.0)) or 0.0),
                "pause_reason": entry.get("pause_reason", pause.get("reason", "")),
                "durable": False,
            }
        )
    return entries


def history(
    redis: Any, ch: Any, database: str, team_id: str, limit: int = HISTORY_LIMIT
) -> list[dict[str, Any]]:
    """Durable rows plus the recent entries not written yet, newest first."""
    rows = durable_entries(ch, database, team_id, limit)
    seen = {row["event_id"] for row in rows}
    pending = [e for e in recent_entries(redis, team_id, limit) if e["event_id"] not in seen]
    merged = sorted(rows + pending, key=lambda e: (e["at"], e["event_id"]), reverse=True)
    return merged[:limit]
