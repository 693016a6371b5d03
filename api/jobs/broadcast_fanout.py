"""Broadcast jobs: SendBroadcastJob fans out, SendBroadcastToContact renders and queues.

The per-contact hand-over is one Lua script: SET NX the BROADCAST:{tag}:{team}:{b}:{c}
guard, write the message mapping and XADD to the team's MTA stream, all or nothing.
Every key a broadcast touches (guard, mapping, stream, progress, parked jobs, its job
queue: jobs carry the team id) carries its team's slot tag (kibamail.redis_keys), so the
script and the job queue's MULTIs stay in one slot of a Redis Cluster. A worker killed at
any point therefore neither loses the contact (the job is reclaimed and the guard is
not set) nor mails it twice (the guard is set together with the XADD). The same script
re-checks the sender: the broadcast's team must still be ready for its from domain (an
edit after launch, a removed or lost domain), else nothing is queued and the broadcast is
marked failed with the reason.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.jobs.queue import BatchHandler, DeadLetterHook, enqueue_many
from api.models import Broadcast, Contact
from api.services.rendering import (
    UNSUBSCRIBE_PURPOSE,
    Draft,
    addr_spec,
    address_domain,
    new_message_id,
    render,
    tracked_html,
)
from api.services.security import Signer
from api.services.templating import render_template
from kibamail.contracts import MessageMapping, OutboundMessage, TrafficKind
from kibamail.intake import QUEUE_SUBMISSION_LUA, submission_record
from kibamail.redis_batching import is_cluster_client
from kibamail.redis_keys import RedisKeys, slot_group, team_tag
from kibamail.settings import Settings
from kibamail.team_budget import OK, charge_sync

log = logging.getLogger(__name__)

SEND_BROADCAST = "SendBroadcastJob"
SEND_TO_CONTACT = "SendBroadcastToContact"
FANOUT_CHUNK = 5000
GUARD_TTL_SECONDS = 90 * 24 * 3600
STATUS_CACHE_SECONDS = 0.5

# KEYS: guard, mapping, stream, progress, the team's ready flag of the from domain.
# ARGV: guard value, guard TTL, then kibamail.intake's mapping JSON, mapping TTL, meta, data.
# Returns 1 queued, 0 already sent, -1 refused (the team is not ready for the domain).
REFUSED = -1
_HANDOVER_LUA = (
    QUEUE_SUBMISSION_LUA
    + """
if redis.call('EXISTS', KEYS[5]) == 0 then return -1 end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 0 end
queue_submission(KEYS[2], KEYS[3], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
redis.call('HINCRBY', KEYS[4], 'sent', 1)
return 1
"""
)


def progress_key(team_id: str, broadcast_id: str) -> str:
    """Hash: status (what workers obey), total, sent, skipped, failed (dead-lettered)."""
    return f"api:broadcast:{team_tag(team_id)}:{team_id}:{broadcast_id}"


def parked_key(team_id: str, broadcast_id: str) -> str:
    """Per-contact jobs set aside while a broadcast is paused (re-queued on resume)."""
    return f"{progress_key(team_id, broadcast_id)}:parked"


def choose_variant(variants: list[dict[str, Any]], contact_id: str) -> dict[str, Any]:
    """Deterministic weighted A/B split by contact id (a retry picks the same variant)."""
    total = sum(int(v.get("weight", 1)) for v in variants) or 1
    point = int(hashlib.sha256(contact_id.encode()).hexdigest()[:8], 16) % total
    for variant in variants:
        point -= int(variant.get("weight", 1))
        if point < 0:
            return variant
    return variants[-1]


@dataclass
class BroadcastJobs:
    settings: Settings
    sessions: sessionmaker[Session]
    redis: Any
    signer: Signer

    def __post_init__(self) -> None:
        self._broadcasts: dict[str, Broadcast] = {}
        self._statuses: dict[str, tuple[float, str]] = {}
        self._handover = self.redis.register_script(_HANDOVER_LUA)  # EVALSHA after the first
        self._cluster = is_cluster_client(self.redis)

    def _broadcast(self, broadcast_id: str) -> Broadcast | None:
        if broadcast_id not in self._broadcasts:
            with self.sessions() as db:
                row = db.get(Broadcast, broadcast_id)
                if row is None:
                    return None
                self._broadcasts[broadcast_id] = row
        return self._broadcasts[broadcast_id]

    def send_broadcast(self, payload: dict[str, Any]) -> None:
        """Fan out: one per-contact job for every subscribed contact of the list."""
        broadcast = self._broadcast(payload["broadcast_id"])
        if broadcast is None:
            return
        after = ""
        total = 0
        budget = self._launch_reservation(broadcast)
        while True:
            with self.sessions() as db:
                rows = db.execute(
                    select(
                        Contact.id,
                        Contact.email,
                        Contact.first_name,
                        Contact.last_name,
                        Contact.fields,
                    )
                    .where(
                        Contact.list_id == broadcast.list_id,
                        Contact.status == "subscribed",
                        Contact.id > after,
                    )
                    .order_by(Contact.id)
                    .limit(FANOUT_CHUNK)
                ).all()
            if not rows:
                break
            after = rows[-1][0]
            if budget is not None:
                rows = self._within_budget(broadcast, rows, budget, total)
                if not rows:
                    break
            total += enqueue_many(
                self.redis,
                SEND_TO_CONTACT,
                (
                    {
                        "broadcast_id": broadcast.id,
                        "team_id": broadcast.team_id,
                        "contact_id": cid,
                        "email": email,
                        "first_name": first,
                        "last_name": last,
                        "fields": fields or {},
                    }
                    for cid, email, first, last, fields in rows
                ),
                slot_group(broadcast.team_id),
            )
        self.redis.hset(progress_key(broadcast.team_id, broadcast.id), "total", total)

    def _launch_reservation(self, broadcast: Broadcast) -> int | None:
        """Recipients reserved in the team's daily budget at launch (None: launched before
        reservations existed, nothing to hold to)."""
        raw = self.redis.hget(progress_key(broadcast.team_id, broadcast.id), "reserved")
        return int(raw) if raw is not None else None

    def _within_budget(
        self, broadcast: Broadcast, rows: Sequence[Any], reserved: int, queued: int
    ) -> Sequence[Any]:
        """The contacts of this chunk the team may still mail: the list may have grown since
        launch, so contacts past the reservation are charged now (daily cap only, as at
        launch); those that no longer fit are not queued and counted as over_budget."""
        covered = max(0, reserved - queued)
        extra = len(rows) - covered
        if extra <= 0:
            return rows
        charged = charge_sync(
            self.redis,
            broadcast.team_id,
            self.settings.sending,
            extra,
            check_bulk=False,
            take_rate=False,
        )
        if charged.status == OK:
            self.redis.hincrby(progress_key(broadcast.team_id, broadcast.id), "reserved", extra)
            return rows
        self.redis.hincrby(progress_key(broadcast.team_id, broadcast.id), "over_budget", extra)
        log.warning(
            "broadcast %s: %d contacts over the team's daily cap not queued (status %d)",
            broadcast.id,
            extra,
            charged.status,
        )
        return rows[:covered]

    def _status(self, team_id: str, broadcast_id: str) -> str:
        """Broadcast status as workers see it, cached briefly (a pause lands within 0.5 s)."""
        cached = self._statuses.get(broadcast_id)
        now = time.monotonic()
        if cached is None or cached[0] < now:
            raw = self.redis.hget(progress_key(team_id, broadcast_id), "status")
            cached = (now + STATUS_CACHE_SECONDS, raw.decode() if raw else "")
            self._statuses[broadcast_id] = cached
        return cached[1]

    def send_to_contact(self, job: dict[str, Any]) -> None:
        error = self.send_to_contacts([job])[0]
        if error is not None:
            raise error

    def send_to_contacts(self, jobs: list[dict[str, Any]]) -> list[Exception | None]:
        """Per-contact jobs read together: the suppression lookups, the contact statuses and
        the hand-over scripts go as one round trip (one query) each for the lot, not one
        per contact. One result per job (None: done, else its exception, retried alone)."""
        results: list[Exception | None] = [None] * len(jobs)
        ready: list[tuple[int, Broadcast, dict[str, Any]]] = []
        for i, job in enumerate(jobs):
            try:
                broadcast = self._admitted(job)
            except Exception as exc:
                results[i] = exc
                continue
            if broadcast is not None:
                ready.append((i, broadcast, job))
        if not ready:
            return results
        skipped: Counter[str] = Counter()
        blocked = self._suppressed_many([(b.team_id, job["email"]) for _i, b, job in ready])
        subscribed = self._subscribed_ids([job["contact_id"] for _i, _b, job in ready])
        handovers: list[tuple[int, Broadcast, str, Any]] = []
        pipe = self.redis.pipeline(transaction=False)
        for (i, broadcast, job), suppressed in zip(ready, blocked, strict=True):
            if suppressed or job["contact_id"] not in subscribed:
                skipped[progress_key(broadcast.team_id, broadcast.id)] += 1
                continue
            try:
                message, mapping = self.render(broadcast, job)
            except Exception as exc:
                results[i] = exc
                continue
            record = submission_record(message, mapping)
            domain = address_domain(broadcast.from_address)
            keys = [
                RedisKeys.broadcast_sent(broadcast.team_id, broadcast.id, job["contact_id"]),
                *record.keys(),
                progress_key(broadcast.team_id, broadcast.id),
                RedisKeys.domain_ready(broadcast.team_id, domain),
            ]
            args = [message.message_id, GUARD_TTL_SECONDS, *record.args()]
            if self._cluster:  # redis-py's cluster pipeline refuses EVALSHA: one call each
                try:
                    handovers.append((i, broadcast, domain, self._handover(keys=keys, args=args)))
                except Exception as exc:
                    results[i] = exc
            else:
                self._handover(keys=keys, args=args, client=pipe)
                handovers.append((i, broadcast, domain, None))
        if not self._cluster and handovers:
            answers = pipe.execute(raise_on_error=False)
            handovers = [(i, b, d, a) for (i, b, d, _), a in zip(handovers, answers, strict=True)]
        refused: set[str] = set()
        for i, broadcast, domain, outcome in handovers:
            if isinstance(outcome, Exception):
                results[i] = outcome
            elif int(outcome) == REFUSED and broadcast.id in refused:
                # One at a time, the jobs after the first refusal would find the broadcast
                # failed and be skipped: count them so.
                skipped[progress_key(broadcast.team_id, broadcast.id)] += 1
            elif int(outcome) == REFUSED:
                refused.add(broadcast.id)
                self.fail_broadcast(
                    broadcast,
                    f"sender domain {domain!r} is not verified for this team; sending stopped",
                )
        if skipped:
            counts = self.redis.pipeline(transaction=False)
            for key, n in skipped.items():
                counts.hincrby(key, "skipped", n)
            counts.execute()
        return results

    def _admitted(self, job: dict[str, Any]) -> Broadcast | None:
        """The job's broadcast if it is sending; None when the job is done here already
        (not this team's, parked while paused, or skipped because the broadcast ended)."""
        broadcast_id = job["broadcast_id"]
        broadcast = self._broadcast(broadcast_id)
        if broadcast is None or broadcast.team_id != job.get("team_id"):
            return None  # the job names its team's keys; a job that disagrees is not ours
        team_id = broadcast.team_id
        progress = progress_key(team_id, broadcast_id)
        status = self._status(team_id, broadcast_id)
        if status == "paused":
            self.redis.rpush(parked_key(team_id, broadcast_id), serialize_job(job))
            now = self.redis.hget(progress, "status")
            if now == b"sending":  # resumed while we parked: do not strand the job
                requeue_parked(self.redis, team_id, broadcast_id)
            return None
        if status != "sending":
            self.redis.hincrby(progress, "skipped", 1)
            return None
        return broadcast

    def _suppressed_many(self, addresses: list[tuple[str, str]]) -> list[bool]:
        """Each (team, email) on its team's suppression list (bounces, complaints, manual)
        or unsubscribed from its marketing mail; one round trip for all."""
        pipe = self.redis.pipeline(transaction=False)
        for team_id, email in addresses:
            pipe.sismember(RedisKeys.suppression(team_id), email.lower())
            pipe.sismember(RedisKeys.marketing_suppression(team_id), email.lower())
        answers = pipe.execute()
        return [bool(answers[2 * n] or answers[2 * n + 1]) for n in range(len(addresses))]

    def _subscribed_ids(self, contact_ids: list[str]) -> set[str]:
        """The contacts subscribed now, not at fan-out: an unsubscribe or an edit made while
        the broadcast was paused (or its job waited in the queue) is obeyed."""
        with self.sessions() as db:
            rows = db.execute(
                select(Contact.id).where(
                    Contact.id.in_(set(contact_ids)), Contact.status == "subscribed"
                )
            )
            return {row[0] for row in rows}

    def fail_broadcast(self, broadcast: Broadcast, reason: str) -> None:
        """Stop a broadcast whose sender is refused: the contact counts as failed, the
        others are skipped (workers obey the progress status), the row says failed."""
        key = progress_key(broadcast.team_id, broadcast.id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hincrby(key, "failed", 1)
        pipe.hset(key, mapping={"status": "failed", "failure_reason": reason})
        pipe.execute()
        self._statuses.pop(broadcast.id, None)
        self._broadcasts.pop(broadcast.id, None)
        with self.sessions.begin() as db:
            row = db.get(Broadcast, broadcast.id)
            if row is not None and row.status in {"scheduled", "sending", "paused"}:
                row.status = "failed"
        log.warning("broadcast %s failed: %s", broadcast.id, reason)

    def render(
        self, broadcast: Broadcast, job: dict[str, Any]
    ) -> tuple[OutboundMessage, MessageMapping]:
        variant = choose_variant(broadcast.variants, job["contact_id"])
        domain = address_domain(broadcast.from_address)
        message_id = new_message_id(domain)
        variables = {
            "email": job["email"],
            "first_name": job["first_name"],
            "last_name": job["last_name"],
            **job["fields"],
        }
        base = self.settings.api.public_url.rstrip("/")
        token = self.signer.dumps(
            UNSUBSCRIBE_PURPOSE, [broadcast.team_id, job["contact_id"], job["email"], message_id]
        )
        unsubscribe_url = f"{base}/u/{token}"
        variables["unsubscribe_url"] = unsubscribe_url
        html = variant.get("html") or None
        if html:
            html = tracked_html(
                render_template(html, variables, html=True),
                signer=self.signer,
                public_url=base,
                message_id=message_id,
                team_id=broadcast.team_id,
            )
        text = render_template(variant["text"], variables) if variant.get("text") else None
        subject = (
            render_template(variant["subject"], variables).replace("\r", " ").replace("\n", " ")
        )
        draft = Draft(
            message_id=message_id,
            from_address=broadcast.from_address,
            to=[job["email"]],
            reply_to=[broadcast.reply_to] if broadcast.reply_to else [],
            subject=subject,
            html=html,
            text=text,
            headers={
                "List-Unsubscribe": f"<{unsubscribe_url}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                "X-Kibamail-Broadcast": broadcast.id,
            },
        )
        message = OutboundMessage(
            message_id=message_id,
            team_id=broadcast.team_id,
            kind=TrafficKind.MARKETING,
            mail_from=addr_spec(broadcast.from_address),
            recipients=[job["email"]],
            data=render(draft),
            source="broadcast",
        )
        mapping = MessageMapping(
            team_id=broadcast.team_id,
            broadcast_id=broadcast.id,
            contact_id=job["contact_id"],
            variant_id=str(variant.get("id", "")),
            kind=TrafficKind.MARKETING,
        )
        return message, mapping

    def handlers(self) -> dict[str, Any]:
        return {SEND_BROADCAST: self.send_broadcast, SEND_TO_CONTACT: self.send_to_contact}

    def batch_handlers(self) -> dict[str, BatchHandler]:
        return {SEND_TO_CONTACT: self.send_to_contacts}

    def dead_letter_hooks(self) -> dict[str, DeadLetterHook]:
        """A dead-lettered contact counts as failed in progress (so the broadcast finishes);
        a dead fan-out is flagged on the progress hash for the API to show."""

        def contact_failed(pipe: Any, job: dict[str, Any]) -> None:
            pipe.hincrby(progress_key(str(job["team_id"]), str(job["broadcast_id"])), "failed", 1)

        def fanout_failed(pipe: Any, job: dict[str, Any]) -> None:
            key = progress_key(str(job["team_id"]), str(job["broadcast_id"]))
            pipe.hset(key, "fanout_failed", "1")

        return {SEND_TO_CONTACT: contact_failed, SEND_BROADCAST: fanout_failed}


def serialize_job(job: dict[str, Any]) -> bytes:
    return orjson.dumps(job)


def requeue_parked(redis: Any, team_id: str, broadcast_id: str) -> int:
    """Move jobs parked during a pause back onto the team's queue."""
    moved = 0
    while True:
        raw = redis.lpop(parked_key(team_id, broadcast_id), 1000)
        if not raw:
            return moved
        jobs = (orjson.loads(r) for r in raw)
        moved += enqueue_many(redis, SEND_TO_CONTACT, jobs, slot_group(team_id))
