"""A team's sending pause as a record with a life cycle: set, reviewed, lifted or confirmed.

The pause itself stays what the MTA and every intake already read: the JSON flag under
``RedisKeys.team_paused`` (a serialized ``TeamPauseEvent`` from the scoring dataflow, or
the API). This module is the one place that reads it as evidence and changes it:

- ``read_pause``/``list_pauses``: score, the scoring components parsed back from the
  verdict's sentence, the team's recent subjects (``queue_sample_subject``, written by
  the MTA with each transactional submission), confirmation and review request;
- ``lift``: in one MULTI, deletes the flag and the team's bulk score, stamps the scoring
  reset (the dataflow ignores submissions from before it, so the burst that paused the
  team cannot pause it again), audits, and queues ``TeamPauseEvent(paused=False)`` on the
  API's event outbox (-> Kafka ``team_pauses`` -> the ``team.unpaused`` webhook and a
  ``raw_team_pauses`` row);
- ``confirm`` keeps the pause and says so in the flag; ``request_review`` records an
  Administrator's request. Every change appends to ``RedisKeys.team_pause_audit`` (the
  recent view) and queues a ``TeamPauseAuditEvent`` (the durable ``raw_team_pause_audit``
  row, read back by ``kibamail.pause_audit.history``).
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from kibamail.contracts import TeamPauseEvent, Topic
from kibamail.outbox import add_to_outbox
from kibamail.pause_audit import audit_event, audit_time
from kibamail.redis_keys import RedisKeys, slot_group
from kibamail.team_budget import pause_reason as pause_reason  # the MTA reads it here

AUDIT_MAX = 200
SAMPLE_SUBJECTS = 5
SUBJECT_MAX_CHARS = 200
SUBJECTS_TTL_SECONDS = 86400
SCORING_RESET_TTL_SECONDS = 30 * 86400
LIFT_NAMESPACE = uuid.UUID("0d7f4b5e-8f0a-4c55-9a3b-51c1a4e2d6f7")
_SUBJECT = re.compile(rb"^subject:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)
# The scoring dataflow's sentence (pipelines.scoring.score_window), read back as numbers.
_COMPONENTS = re.compile(
    r"of the last (?P<recent_messages>\d+) messages (?P<marketing_share>\d+)% carry "
    r"List-Unsubscribe or marketing markers and (?P<near_duplicate_share>\d+)% have "
    r"near-identical bodies; (?P<window_messages>\d+) messages in (?P<window_minutes>[\d.]+) "
    r"min, (?P<baseline_ratio>[\d.]+)x the team's baseline, to (?P<recipient_domains>\d+) "
    r"recipient domains"
)


class PauseError(Exception):
    """A life-cycle step that does not apply (no pause, nothing to do); readable."""


@dataclass
class PauseRecord:
    team_id: str
    source: str
    score: float
    reason: str
    paused_at: str | None
    event_id: str
    components: dict[str, float] = field(default_factory=dict)
    sample_subjects: list[str] = field(default_factory=list)
    confirmed: dict[str, Any] | None = None
    review: dict[str, Any] | None = None

    @property
    def state(self) -> str:
        return "confirmed" if self.confirmed else "paused"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state}


def now_iso(now: float | None = None) -> str:
    stamp = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def subject_of(data: bytes) -> str:
    """The Subject header of a raw message (unfolded, as sent; '' when absent)."""
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    match = _SUBJECT.search(head)
    if match is None:
        return ""
    text = re.sub(rb"\r?\n[ \t]+", b" ", match.group(1)).strip()
    return text.decode(errors="replace")[:SUBJECT_MAX_CHARS]


def queue_sample_subject(pipe: Any, team_id: str, data: bytes) -> None:
    """Keep the team's last few subjects (on the caller's pipeline, e.g. the MTA's MULTI)."""
    key = RedisKeys.team_recent_subjects(team_id)
    pipe.lpush(key, subject_of(data))
    pipe.ltrim(key, 0, SAMPLE_SUBJECTS - 1)
    pipe.expire(key, SUBJECTS_TTL_SECONDS)


def parse_components(reason: str) -> dict[str, float]:
    match = _COMPONENTS.search(reason)
    if match is None:
        return {}
    values = {name: float(value) for name, value in match.groupdict().items()}
    values["marketing_share"] /= 100
    values["near_duplicate_share"] /= 100
    return values


def _text(raw: Any) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)


def _flag(raw: Any) -> dict[str, Any]:
    """The stored flag as a dict; a plain-text flag (set by hand) is its reason."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = None
    return value if isinstance(value, dict) else {"reason": pause_reason(raw)}


def _record(team_id: str, flag: dict[str, Any], subjects: list[Any]) -> PauseRecord:
    reason = str(flag.get("reason", "")) or "sending paused"
    score = flag.get("score", 0.0)
    return PauseRecord(
        team_id=team_id,
        source=str(flag.get("source", "manual")),
        score=float(score) if isinstance(score, int | float) else 0.0,
        reason=reason,
        paused_at=str(flag["occurred_at"]) if flag.get("occurred_at") else None,
        event_id=str(flag.get("event_id", "")),
        components=parse_components(reason),
        sample_subjects=[_text(s) for s in subjects],
        confirmed=flag.get("confirmed"),
        review=flag.get("review"),
    )


def read_pause(redis: Any, team_id: str) -> PauseRecord | None:
    pipe = redis.pipeline(transaction=False)
    pipe.get(RedisKeys.team_paused(team_id))
    pipe.lrange(RedisKeys.team_recent_subjects(team_id), 0, SAMPLE_SUBJECTS - 1)
    raw, subjects = pipe.execute()
    return None if raw is None else _record(team_id, _flag(raw), subjects)


def team_of_key(key: Any) -> str:
    """'team:{tag}:<id>:paused' -> '<id>'."""
    return RedisKeys.team_of_paused_key(_text(key))


def list_pauses(redis: Any) -> list[PauseRecord]:
    """Every paused team, oldest pause first (SCAN: every master of a cluster)."""
    records = []
    for key in redis.scan_iter(match=RedisKeys.TEAM_PAUSED_PATTERN, count=500):
        record = read_pause(redis, team_of_key(key))
        if record is not None:
            records.append(record)
    return sorted(records, key=lambda r: (r.paused_at or "", r.team_id))


def audit_log(redis: Any, team_id: str, limit: int = AUDIT_MAX) -> list[dict[str, Any]]:
    """Newest first."""
    return [orjson.loads(e) for e in redis.lrange(RedisKeys.team_pause_audit(team_id), 0, limit)]


def _audit(pipe: Any, team_id: str, entry: dict[str, Any], flag: dict[str, Any], at: float) -> None:
    """The recent view (capped Redis list) and the durable row (a TeamPauseAuditEvent on
    the team's group outbox, in the same MULTI and slot as the decision; the MTA's outbox
    publisher drains it to Kafka: kibamail.pause_audit)."""
    reason = str(entry.get("reason", entry.get("note", "")))
    event = audit_event(team_id, entry["action"], str(entry["by"]), reason, at, flag)
    key = RedisKeys.team_pause_audit(team_id)
    pipe.lpush(key, orjson.dumps({**entry, "at": audit_time(at), "event_id": event.event_id}))
    pipe.ltrim(key, 0, AUDIT_MAX - 1)
    outbox = RedisKeys.event_outbox(slot_group(team_id))
    add_to_outbox(pipe, Topic.TEAM_PAUSE_AUDIT, team_id, event, stream=outbox)


def _require_reason(reason: str) -> str:
    text = " ".join(reason.split())
    if len(text) < 3:
        raise PauseError("a reason is required (at least 3 characters): it is audited")
    return text[:500]


def _current(redis: Any, team_id: str) -> tuple[Any, dict[str, Any]]:
    raw = redis.get(RedisKeys.team_paused(team_id))
    if raw is None:
        raise PauseError(f"team {team_id} is not paused")
    return raw, _flag(raw)


def lift(
    redis: Any, team_id: str, *, operator: str, reason: str, now: float | None = None
) -> TeamPauseEvent:
    """Lift the pause (see the module doc); returns the queued ``team.unpaused`` event."""
    text = _require_reason(reason)
    at = time.time() if now is None else now
    _raw, flag = _current(redis, team_id)
    event = TeamPauseEvent(
        event_id=uuid.uuid5(LIFT_NAMESPACE, f"{team_id}:{flag.get('event_id', '')}:{at}").hex,
        team_id=team_id,
        occurred_at=datetime.fromtimestamp(at, UTC),
        paused=False,
        score=float(flag.get("score", 0.0) or 0.0),
        reason=f"lifted by {operator}: {text}",
        source="api",
    )
    pipe = redis.pipeline(transaction=True)
    pipe.delete(RedisKeys.team_paused(team_id))
    pipe.delete(RedisKeys.reputation_throttle("bulk_score", team_id))
    pipe.set(RedisKeys.scoring_reset(team_id), repr(at), ex=SCORING_RESET_TTL_SECONDS)
    _audit(
        pipe,
        team_id,
        {"action": "lift", "by": operator, "reason": text, "at": now_iso(at), "pause": flag},
        flag,
        at,
    )
    # The team's group outbox (drained by the MTA's publisher): same slot as the MULTI.
    outbox = RedisKeys.event_outbox(slot_group(team_id))
    add_to_outbox(pipe, Topic.TEAM_PAUSES, team_id, event, stream=outbox)
    pipe.execute()
    return event


def confirm(
    redis: Any, team_id: str, *, operator: str, reason: str, now: float | None = None
) -> PauseRecord:
    """Keep the pause, marked confirmed (the MTA keeps answering with its reason)."""
    text = _require_reason(reason)
    at = time.time() if now is None else now
    _raw, flag = _current(redis, team_id)
    entry = {"by": operator, "reason": text, "at": now_iso(at)}
    pipe = redis.pipeline(transaction=True)
    pipe.set(RedisKeys.team_paused(team_id), orjson.dumps({**flag, "confirmed": entry}), xx=True)
    _audit(pipe, team_id, {"action": "confirm", **entry}, flag, at)
    pipe.execute()
    record = read_pause(redis, team_id)
    if record is None:
        raise PauseError(f"team {team_id} is not paused")
    return record


def request_review(
    redis: Any, team_id: str, *, requested_by: str, note: str, now: float | None = None
) -> PauseRecord:
    """An Administrator asks the operators to look again (one open request per pause)."""
    at = time.time() if now is None else now
    _raw, flag = _current(redis, team_id)
    if flag.get("review"):
        raise PauseError("a review of this pause was already requested")
    entry = {"by": requested_by, "note": " ".join(note.split())[:2000], "at": now_iso(at)}
    pipe = redis.pipeline(transaction=True)
    pipe.set(RedisKeys.team_paused(team_id), orjson.dumps({**flag, "review": entry}), xx=True)
    _audit(pipe, team_id, {"action": "review_requested", **entry}, flag, at)
    pipe.execute()
    record = read_pause(redis, team_id)
    if record is None:
        raise PauseError(f"team {team_id} is not paused")
    return record


def scoring_reset_at(redis: Any, team_id: str) -> float:
    (raw,) = redis.mget([RedisKeys.scoring_reset(team_id)])  # MGET: the dataflows' fakes have it
    try:
        return float(raw) if raw else 0.0
    except ValueError:
        return 0.0


class ScoringResets:
    """``scoring_reset_at`` for the scoring dataflow, cached per team for ``ttl`` seconds
    (one Redis GET per team and batch at most)."""

    def __init__(self, redis_factory: Any, ttl: float = 1.0) -> None:
        self._factory = redis_factory
        self._client: Any = None
        self._ttl = ttl
        self._cache: dict[str, tuple[float, float]] = {}

    def __call__(self, team_id: str) -> float:
        hit = self._cache.get(team_id)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        if self._client is None:
            self._client = self._factory()
        value = scoring_reset_at(self._client, team_id)
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[team_id] = (time.monotonic() + self._ttl, value)
        return value
