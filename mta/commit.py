"""Recording an entry's outcomes: events, retries, suppressions and the XACK, atomically.

Everything an entry's delivery decided — status events into the outbox, retry/held jobs,
hard-bounce suppressions — is queued with the entry's XACK in one MULTI, so a crash
either redoes the whole entry (same deterministic event ids) or nothing. The MULTIs of
concurrent deliveries share one round trip (``PipelineBatcher``): a batch is one
MULTI/EXEC, still all-or-nothing per entry.
"""

from __future__ import annotations

import time
from typing import Any

from kibamail.contracts import BounceClass, MessageStatus, OutboundMessage, Topic, TrafficKind
from kibamail.redis_batching import PipelineBatcher
from kibamail.redis_keys import RedisKeys

from . import metrics
from .bounces import enhanced_code
from .config import QueueConfig
from .events import add_to_outbox, make_status_event
from .features import submission_features
from .outcomes import Outcome
from .queue import SubmissionQueue, backoff_seconds

# How long a delivered recipient can still be reported (bounced/complained) about.
REPORT_WINDOW_SECONDS = 30 * 24 * 3600


def address_domain(address: str) -> str:
    """Lower-cased domain of an envelope address (shared with the delivery worker)."""
    return address.rsplit("@", 1)[-1].lower()


class OutcomeRecorder:
    def __init__(self, redis: Any, queue: SubmissionQueue, config: QueueConfig) -> None:
        self.queue = queue
        self.config = config
        self.batcher = PipelineBatcher(redis, transaction=True)

    async def record(self, entry_id: bytes, msg: OutboundMessage, outcomes: list[Outcome]) -> None:
        """Returns once the outcomes and the XACK are in Redis (raises if they are not)."""
        commands: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self._plan(commands, entry_id, msg, outcomes)

        def build(pipe: Any) -> None:
            for name, args, kwargs in commands:
                getattr(pipe, name)(*args, **kwargs)

        await self.batcher.run(build)
        for o in outcomes:
            metrics.OUTCOMES.labels(o.status.value, o.bounce_class.value, o.pool, o.source_ip).inc()
        if msg.attempt == 0:
            metrics.ACCEPTED.labels(msg.source).inc()

    async def run(self, build: Any) -> list[Any]:
        """Any other MULTI that acknowledges an entry (dead letters, scheduled sends)."""
        return await self.batcher.run(build)

    def _plan(
        self,
        commands: list[tuple[str, tuple[Any, ...], dict[str, Any]]],
        entry_id: bytes,
        msg: OutboundMessage,
        outcomes: list[Outcome],
    ) -> None:
        """The commands, computed before the batch (events serialized once, here)."""
        recorder = _CommandList(commands)
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
            add_to_outbox(recorder, Topic.MESSAGE_STATUSES, msg.message_id, event)

        if msg.attempt == 0:
            for rcpt in msg.recipients:
                emit(rcpt, MessageStatus.ACCEPTED, occurred_at=msg.submitted_at)
            if msg.source == "smtp" and msg.kind == TrafficKind.TRANSACTIONAL:
                # Computed here, not while the SMTP client waits; deterministic event id.
                features = submission_features(
                    msg.team_id, msg.message_id, msg.recipients, msg.data
                )
                add_to_outbox(recorder, Topic.SUBMISSION_FEATURES, msg.team_id, features)
        retry: dict[float, list[str]] = {}
        for o in outcomes:
            status = o.status
            if status in (MessageStatus.DEFERRED, MessageStatus.HELD) and expired:
                status = o.status = MessageStatus.EXPIRED
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
                reason=o.text[:500] if status != MessageStatus.DELIVERED else "",
                transcript="\n".join(o.transcript)[-4000:],
            )
            if status == MessageStatus.DEFERRED:
                due = now + backoff_seconds(self.config, msg.attempt + 1)
                retry.setdefault(due, []).append(o.rcpt)
            elif status == MessageStatus.HELD:
                retry.setdefault(now + o.retry_after, []).append(o.rcpt)
            elif status == MessageStatus.BOUNCED and o.bounce_class == BounceClass.HARD:
                recorder.sadd(RedisKeys.suppression(msg.team_id), o.rcpt.lower())
        delivered = {
            o.rcpt.lower(): o.return_ref for o in outcomes if o.status == MessageStatus.DELIVERED
        }
        if delivered:
            record_sent(recorder, msg.message_id, msg.team_id, msg.kind.value, delivered)
        # One job per due time: deferred recipients share one, held ones another.
        merged: dict[float, list[str]] = {}
        for due, rcpts in sorted(retry.items()):
            key = next((d for d in merged if abs(d - due) < 1.0), due)
            merged.setdefault(key, []).extend(rcpts)
        for due, rcpts in merged.items():
            next_msg = msg.model_copy(update={"recipients": rcpts, "attempt": msg.attempt + 1})
            self.queue.schedule(recorder, next_msg, due)
        self.queue.ack(recorder, entry_id)


def record_sent(
    pipe: Any, message_id: str, team_id: str, kind: str, rcpt_refs: dict[str, str]
) -> None:
    """Remember which recipients a remote MX accepted, and under which return-path ref:
    the only reports mta.inbound lets change state are about these (queued on ``pipe``,
    in the MULTI of the outcome)."""
    key = RedisKeys.sent_recipients(message_id)
    fields = {"team": team_id, "kind": kind}
    fields.update({f"rcpt:{rcpt.lower()}": ref for rcpt, ref in rcpt_refs.items()})
    pipe.hset(key, mapping=fields)
    pipe.expire(key, REPORT_WINDOW_SECONDS)
    for ref in {ref for ref in rcpt_refs.values() if ref}:
        pipe.set(RedisKeys.return_path(ref), message_id, ex=REPORT_WINDOW_SECONDS)


class _CommandList:
    """Looks like a pipeline; records the calls so they can be replayed into the batch."""

    def __init__(self, commands: list[tuple[str, tuple[Any, ...], dict[str, Any]]]) -> None:
        self._commands = commands

    def __getattr__(self, name: str) -> Any:
        def queue(*args: Any, **kwargs: Any) -> None:
            self._commands.append((name, args, kwargs))

        return queue
