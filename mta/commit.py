"""Recording an entry's outcomes: events, retries, suppressions and the XACK, atomically.

Everything an entry's delivery decided — status events into the outbox, retry/held jobs,
suppressions (only where the classifier's action is ``suppress``), the soft-bounce
window's counters (``mta.soft_bounces``) and the team's fix_our_side reputation inputs
(``mta.reputation``) — is queued with the entry's XACK in one MULTI, so a crash
either redoes the whole entry (same deterministic event ids) or nothing. Every key of
that MULTI carries the hash tag of the entry's slot group (the team's: its stream, its
group's outbox and retry schedule, its team keys), so it is one slot on a cluster. The
MULTIs of concurrent deliveries share one round trip (``mta.group_commit``): on one node a
batch is one MULTI/EXEC, on a cluster one per group, sent to the group's master; still
all-or-nothing per entry.

The one key outside a group, ``RedisKeys.client_message_id`` (shared by teams), rides in
the MULTI on one node; on a cluster (another slot) it is written by its own idempotent
SADD + EXPIRE just before the MULTI: a redelivery writes it again, and a member whose
message never got its sent record is ignored by mta.inbound.
"""

from __future__ import annotations

import re
import time
from typing import Any

from kibamail.contracts import MessageStatus, OutboundMessage, Topic, TrafficKind
from kibamail.intake import PLATFORM_ID_HEADER
from kibamail.redis_batching import PipelineBatcher, is_cluster_client
from kibamail.redis_keys import RedisKeys
from kibamail.team_pauses import queue_sample_subject

from . import metrics
from .bounces import enhanced_code
from .config import QueueConfig
from .events import add_to_outbox, make_status_event
from .features import submission_features
from .group_commit import GroupCommit
from .outcomes import Outcome
from .queue import SubmissionQueue, backoff_seconds
from .reputation import fix_our_side_recorded, queue_fix_our_side
from .soft_bounces import reason_action, suppression_reason, window

# How long a delivered recipient can still be reported (bounced/complained) about.
REPORT_WINDOW_SECONDS = 30 * 24 * 3600


def address_domain(address: str) -> str:
    """Lower-cased domain of an envelope address (shared with the delivery worker)."""
    return address.rsplit("@", 1)[-1].lower()


_HEADERS = re.compile(
    rb"^(message-id|" + re.escape(PLATFORM_ID_HEADER.encode()) + rb"):[ \t]*<?([^>\r\n]+)>?",
    re.IGNORECASE | re.MULTILINE,
)


def client_message_id(data: bytes) -> str:
    """The client's own Message-ID of a rendered message, when the platform id travels in
    X-Kibamail-Message-ID beside it ("" when the Message-ID is the platform id)."""
    head = data.split(b"\r\n\r\n", 1)[0][:65536]
    found = {m.group(1).lower(): m.group(2).strip() for m in _HEADERS.finditer(head)}
    if PLATFORM_ID_HEADER.lower().encode() not in found:
        return ""
    return found.get(b"message-id", b"").decode("utf-8", "replace")[:255]


class OutcomeRecorder:
    def __init__(self, redis: Any, queue: SubmissionQueue, config: QueueConfig) -> None:
        self.queue = queue
        self.config = config
        self.batcher = GroupCommit(redis)  # per group (and its master) on a cluster
        self.singles = PipelineBatcher(redis, transaction=False)
        self.cluster = is_cluster_client(redis)

    async def record(
        self, group: int, entry_id: bytes, msg: OutboundMessage, outcomes: list[Outcome]
    ) -> None:
        """Returns once the outcomes and the XACK are in Redis (raises if they are not).
        ``group``: the slot group whose stream the entry came from (its team's)."""
        commands: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        header_id = self._plan(commands, group, entry_id, msg, outcomes)
        if header_id:
            ids = RedisKeys.client_message_id(header_id)

            def remember(pipe: Any) -> None:
                pipe.sadd(ids, msg.message_id)
                pipe.expire(ids, REPORT_WINDOW_SECONDS)

            if self.cluster:
                await self.singles.run(remember)
            else:  # one slot for everything: in the MULTI, no extra round trip
                remember(_CommandList(commands))

        def build(pipe: Any) -> None:
            for name, args, kwargs in commands:
                getattr(pipe, name)(*args, **kwargs)

        await self.batcher.run(build, group)
        for o in outcomes:
            metrics.OUTCOMES.labels(o.status.value, o.bounce_class.value, o.pool, o.source_ip).inc()
            if o.bounce_action == "fix_our_side":
                fix_our_side_recorded(msg.team_id, o.bounce_reason, o.provider_group, o.text)
            elif o.bounce_action == "suppress" and o.status == MessageStatus.BOUNCED:
                metrics.SUPPRESSIONS.labels(o.bounce_reason).inc()
        if msg.attempt == 0:
            metrics.ACCEPTED.labels(msg.source).inc()

    async def run(self, group: int, build: Any) -> list[Any]:
        """Any other MULTI that acknowledges an entry of ``group`` (dead letters,
        scheduled sends); ``build`` must queue keys of that group only."""
        return await self.batcher.run(build, group)

    def _plan(
        self,
        commands: list[tuple[str, tuple[Any, ...], dict[str, Any]]],
        group: int,
        entry_id: bytes,
        msg: OutboundMessage,
        outcomes: list[Outcome],
    ) -> str:
        """The commands, computed before the batch (events serialized once, here); returns
        the client's own Message-ID to remember outside the MULTI ("" if none)."""
        recorder = _CommandList(commands)
        outbox = RedisKeys.event_outbox(group)  # the worker checked: the team's group
        now = time.time()
        expired = now - msg.submitted_at.timestamp() > self.config.max_age_seconds
        base = {
            "message_id": msg.message_id,
            "team_id": msg.team_id,
            "sender_domain": address_domain(msg.mail_from),
            "kind": msg.kind,
        }

        groups = {o.rcpt: o.provider_group for o in outcomes}

        def emit(rcpt: str, status: MessageStatus, **fields: Any) -> None:
            event = make_status_event(
                **base,
                recipient=rcpt,
                recipient_domain=address_domain(rcpt),
                status=status,
                attempt=msg.attempt,
                provider_group=groups.get(rcpt, ""),
                **fields,
            )
            add_to_outbox(recorder, Topic.MESSAGE_STATUSES, msg.message_id, event, outbox)

        if msg.attempt == 0:
            for rcpt in msg.recipients:
                emit(rcpt, MessageStatus.ACCEPTED, occurred_at=msg.submitted_at)
            if msg.source == "smtp" and msg.kind == TrafficKind.TRANSACTIONAL:
                # Computed here, not while the SMTP client waits; deterministic event id.
                features = submission_features(
                    msg.team_id, msg.message_id, msg.recipients, msg.data
                )
                add_to_outbox(recorder, Topic.SUBMISSION_FEATURES, msg.team_id, features, outbox)
                queue_sample_subject(recorder, msg.team_id, msg.data)  # a pause's evidence
        retry: dict[float, list[str]] = {}
        soft = window()
        for o in outcomes:
            status = o.status
            # A soft bounce of the window: a 5xx whose reason retries, or giving up after a
            # remote deferral that was about the recipient (not our throttle, not a block).
            soft_bounce = status == MessageStatus.BOUNCED and soft.counts(
                o.bounce_reason, o.bounce_action
            )
            if status in (MessageStatus.DEFERRED, MessageStatus.HELD) and expired:
                soft_bounce = status == MessageStatus.DEFERRED and o.bounce_action == "retry"
                status = o.status = MessageStatus.EXPIRED
                o.bounce_reason, o.bounce_action = "expired", reason_action("expired")
            emit(
                o.rcpt,
                status,
                pool=o.pool,
                source_ip=o.source_ip,
                mx_host=o.mx_host,
                smtp_code=o.code,
                enhanced_code=enhanced_code(o.text),
                smtp_response=o.text[:1000],
                bounce_class=o.bounce_class,
                bounce_reason=o.bounce_reason,
                bounce_action=o.bounce_action,
                reason=o.text[:500] if status != MessageStatus.DELIVERED else "",
                transcript="\n".join(o.transcript)[-4000:],
            )
            rcpt = o.rcpt.lower()
            if o.bounce_action == "fix_our_side":
                queue_fix_our_side(recorder, msg.team_id, o.bounce_reason, now)
            if status == MessageStatus.BOUNCED and o.bounce_action == "suppress":
                recorder.sadd(RedisKeys.suppression(msg.team_id), rcpt)
                why = suppression_reason(o.bounce_reason, "delivery", now)
                recorder.hset(RedisKeys.suppression_reasons(msg.team_id), rcpt, why)
            elif soft_bounce:
                soft.queue_soft_bounce(recorder, msg.team_id, rcpt, o.bounce_reason, now)
            elif status == MessageStatus.DELIVERED:
                soft.queue_delivered(recorder, msg.team_id, rcpt)
            if status == MessageStatus.DEFERRED:
                due = now + backoff_seconds(self.config, msg.attempt + 1)
                retry.setdefault(due, []).append(o.rcpt)
            elif status == MessageStatus.HELD:
                retry.setdefault(now + o.retry_after, []).append(o.rcpt)
        delivered = {
            o.rcpt.lower(): o.return_ref for o in outcomes if o.status == MessageStatus.DELIVERED
        }
        header_id = ""
        if delivered:
            header_id = client_message_id(msg.data)
            record_sent(recorder, msg.message_id, msg.team_id, msg.kind.value, delivered)
        # One job per due time: deferred recipients share one, held ones another.
        merged: dict[float, list[str]] = {}
        for due, rcpts in sorted(retry.items()):
            key = next((d for d in merged if abs(d - due) < 1.0), due)
            merged.setdefault(key, []).extend(rcpts)
        for due, rcpts in merged.items():
            next_msg = msg.model_copy(update={"recipients": rcpts, "attempt": msg.attempt + 1})
            self.queue.schedule(recorder, group, next_msg, due)
        self.queue.ack(recorder, group, entry_id)
        return header_id


def record_sent(
    pipe: Any, message_id: str, team_id: str, kind: str, rcpt_refs: dict[str, str]
) -> None:
    """Remember which recipients a remote MX accepted, and under which return-path ref:
    the only reports mta.inbound lets change state are about these (queued on ``pipe``,
    in the MULTI of the outcome; both keys carry the team's group tag, and mta.inbound,
    knowing only a ref or a message id, looks in every group)."""
    key = RedisKeys.sent_recipients(team_id, message_id)
    fields = {"team": team_id, "kind": kind}
    fields.update({f"rcpt:{rcpt.lower()}": ref for rcpt, ref in rcpt_refs.items()})
    pipe.hset(key, mapping=fields)
    pipe.expire(key, REPORT_WINDOW_SECONDS)
    for ref in {ref for ref in rcpt_refs.values() if ref}:
        pipe.set(RedisKeys.return_path(team_id, ref), message_id, ex=REPORT_WINDOW_SECONDS)


class _CommandList:
    """Looks like a pipeline; records the calls so they can be replayed into the batch."""

    def __init__(self, commands: list[tuple[str, tuple[Any, ...], dict[str, Any]]]) -> None:
        self._commands = commands

    def __getattr__(self, name: str) -> Any:
        def queue(*args: Any, **kwargs: Any) -> None:
            self._commands.append((name, args, kwargs))

        return queue
