"""Which inbound report items may change state, and recording those once.

Anyone can mail a DSN or an ARF report quoting any message id. An item counts only when
it is tied to a recipient a remote MX really accepted (``mta.commit.record_sent``), by
the strongest evidence the report carries:

(a) a signed return path: the one the report was addressed to (verified at RCPT), else a
    ``bounces+<ref>.<mac>`` token found in the report, whose MAC is checked here (a
    tampered token refuses the item, it never falls back to weaker evidence). The ref
    names the message; the reported recipient must be one of that transaction's (a
    redacted complaint takes the transaction's only recipient);
(b) else the platform id (``X-Kibamail-Message-ID``) quoted: it must have a sent record
    and the reported recipient must be in it;
(c) else the original Message-ID: ours (the platform id) or a client's own, mapped back
    through ``RedisKeys.client_message_id``; again the recipient must be in the record.

Everything else is counted in ``kibamail_mta_forged_reports_total``, logged, and changes
nothing. A counted item is recorded once per (team, message, recipient, kind). What it
changes follows the classifier's action: bounces with ``suppress`` and complaints put
the address on the team's suppression list (reason recorded); ``fix_our_side`` raises
the team's reputation signal and never suppresses; ``retry`` bounces feed the soft-bounce
window; delay warnings are ``deferred`` events; an ARF not-spam report lifts a
suppression the MTA made for that team (never one the team added itself).

The sent record and the return-path ref carry their team's slot-group tag
(``kibamail.redis_keys``); a report names no team, so both are looked up in every group at
once (one pipelined read; reports are rare), and only a record whose team belongs to the
group it was found in counts. What one report changes is one MULTI per team's group.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from kibamail.contracts import BounceClass, MessageStatus, Topic, TrafficKind
from kibamail.redis_keys import SLOT_GROUPS, RedisKeys, slot_group
from kibamail.report_tokens import verify_return_path

from . import metrics
from .commit import REPORT_WINDOW_SECONDS
from .config import MtaConfig
from .events import add_to_outbox, make_status_event
from .policies import provider_group
from .reputation import fix_our_side_recorded, queue_fix_our_side
from .soft_bounces import suppression_reason, window

log = logging.getLogger(__name__)

# Reports arrive after the synchronous attempts; a high attempt number keeps their event
# ids distinct from (and stable across re-sent copies of) the same report.
REPORT_ATTEMPT = 1000
# A claimed (team, message, recipient, kind) whose MULTI never ran is free again after this.
CLAIM_SECONDS = 60
NOT_SPAM = "not_spam"

REFUSALS = {
    "bad_token": "the return path token in the report is not one we signed",
    "unknown_return_path": "the return path names no message we sent",
    "no_message_id": "no message id of ours is quoted",
    "unknown_message": "no message of ours has that id",
    "unknown_recipient": "that message was never sent to the reported recipient",
    "recipient_not_in_transaction": "the return path was not used for the reported recipient",
}

_CLASS_OF_ACTION = {"suppress": BounceClass.HARD, "fix_our_side": BounceClass.POLICY}


@dataclass(frozen=True)
class ReportItem:
    """One recipient of an inbound report. ``message_id``: the platform id quoted, else
    the original Message-ID ("" if none); ``status`` bounced, deferred (a delay warning)
    or complained (``reason`` not_spam: the ARF not-spam report)."""

    message_id: str
    recipient: str
    status: MessageStatus
    code: int
    enhanced: str
    text: str
    reason: str = ""
    action: str = ""
    return_path: str = ""  # a bounces+<ref>.<mac> local part found in the report (unverified)
    header_message_id: str = ""  # the quoted original's Message-ID header


@dataclass
class RecordResult:
    recorded: int = 0
    duplicates: int = 0
    refused: str = ""  # the reason of the first forged item ("" if none)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class _Forged(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ReportRecorder:
    def __init__(self, redis: Any, config: MtaConfig, secret: str = "") -> None:
        self.redis = redis
        self.config = config
        self.secret = secret

    def _forged(self, result: RecordResult, reason: str, item: ReportItem, peer: str) -> None:
        metrics.FORGED_REPORTS.labels(reason).inc()
        log.warning(
            "forged or unverifiable %s report refused (%s): message %r recipient %r from %s",
            item.status.value,
            reason,
            item.message_id,
            item.recipient,
            peer,
        )
        result.refused = result.refused or reason

    async def _in_groups(self, command: str, key: Any) -> list[tuple[int, Any]]:
        """(group, reply) of ``command`` on ``key(group)`` for every group with a reply."""
        pipe = self.redis.pipeline(transaction=False)
        for g in range(SLOT_GROUPS):
            getattr(pipe, command)(key(g))
        return [(g, r) for g, r in enumerate(await pipe.execute()) if r]

    async def _sent(self, message_id: str) -> dict[str, str]:
        """The message's sent record from the group of its team ({} if none)."""
        key = lambda g: RedisKeys.sent_recipients(g, message_id)  # noqa: E731
        for g, raw in await self._in_groups("hgetall", key):
            sent = {_text(k): _text(v) for k, v in raw.items()}
            if sent.get("team") and slot_group(sent["team"]) == g:
                return sent
        return {}

    async def _by_ref(self, ref: str, item: ReportItem) -> tuple[str, dict[str, str], str]:
        found = await self._in_groups("get", lambda g: RedisKeys.return_path(g, ref))
        if not found:
            raise _Forged("unknown_return_path")
        message_id = _text(found[0][1])
        sent = await self._sent(message_id)
        if not sent.get("team") or slot_group(sent["team"]) != found[0][0]:
            raise _Forged("unknown_message")
        rcpts = [k[5:] for k, v in sent.items() if k.startswith("rcpt:") and v == ref]
        recipient = item.recipient or (rcpts[0] if len(rcpts) == 1 else "")
        sent_ref = sent.get(f"rcpt:{recipient}")
        if sent_ref is None:
            raise _Forged("unknown_recipient")
        if sent_ref != ref:
            raise _Forged("recipient_not_in_transaction")
        return message_id, sent, recipient

    async def _by_ids(self, item: ReportItem) -> tuple[str, dict[str, str], str]:
        candidates = [i for i in (item.message_id, item.header_message_id) if i]
        if not candidates:
            raise _Forged("no_message_id")
        for header_id in dict.fromkeys(candidates):
            mapped = await self.redis.smembers(RedisKeys.client_message_id(header_id))
            candidates += sorted(_text(m) for m in mapped)
        known = False
        for message_id in dict.fromkeys(candidates):
            sent = await self._sent(message_id)
            if not sent.get("team"):
                continue
            known = True
            if item.recipient and f"rcpt:{item.recipient}" in sent:
                return message_id, sent, item.recipient
        raise _Forged("unknown_recipient" if known else "unknown_message")

    async def _attribute(
        self, item: ReportItem, ref: str | None
    ) -> tuple[str, dict[str, str], str]:
        """(platform message id, its sent record, recipient) or _Forged."""
        if ref is None and item.return_path:
            ref = verify_return_path(self.secret, item.return_path) if self.secret else None
            if ref is None:
                raise _Forged("bad_token")
        if ref is not None:
            return await self._by_ref(ref, item)
        return await self._by_ids(item)

    async def record(
        self, items: list[ReportItem], ref: str | None, peer: str = ""
    ) -> RecordResult:
        """``ref``: the verified return-path ref the report was addressed to, if any."""
        result = RecordResult()
        pipes: dict[int, Any] = {}  # one MULTI per team's slot group
        claimed: list[str] = []
        signals: list[tuple[str, ReportItem, str]] = []
        for item in items:
            try:
                message_id, sent, recipient = await self._attribute(item, ref)
            except _Forged as forged:
                self._forged(result, forged.reason, item, peer)
                continue
            team = sent["team"]
            kind = NOT_SPAM if item.reason == NOT_SPAM else item.status.value
            seen = RedisKeys.report_seen(team, message_id, recipient, kind)
            if not await self.redis.set(seen, "claimed", nx=True, ex=CLAIM_SECONDS):
                result.duplicates += 1
                continue
            claimed.append(seen)
            pipe = pipes.get(slot_group(team))
            if pipe is None:
                pipe = pipes[slot_group(team)] = self.redis.pipeline(transaction=True)
            domain = recipient.rpartition("@")[2]
            group = provider_group(self.config, domain)
            if kind == NOT_SPAM:
                await self._queue_not_spam(pipe, team, recipient)
            else:
                self._queue(pipe, item, message_id, recipient, team, TrafficKind(sent["kind"]))
                if item.action == "fix_our_side":
                    signals.append((team, item, group))
            pipe.set(seen, "1", ex=REPORT_WINDOW_SECONDS)
            result.recorded += 1
        if claimed:
            try:
                for pipe in pipes.values():
                    await pipe.execute()
            except Exception:
                undo = self.redis.pipeline(transaction=False)
                for seen in claimed:  # a re-sent copy may try again
                    undo.delete(seen)
                await undo.execute()
                raise
        for team, item, group in signals:
            fix_our_side_recorded(team, item.reason, group, item.text)
        return result

    async def _queue_not_spam(self, pipe: Any, team: str, recipient: str) -> None:
        reasons = RedisKeys.suppression_reasons(team)
        if await self.redis.hget(reasons, recipient) is None:
            log.info("not-spam report for %s (team %s): no MTA suppression", recipient, team)
            return
        pipe.srem(RedisKeys.suppression(team), recipient)
        pipe.hdel(reasons, recipient)
        metrics.UNSUPPRESSED.inc()
        log.info("not-spam report lifted the suppression of %s for team %s", recipient, team)

    def _queue(
        self,
        pipe: Any,
        item: ReportItem,
        message_id: str,
        recipient: str,
        team: str,
        kind: TrafficKind,
    ) -> None:
        now = time.time()
        cls = BounceClass.NONE
        if item.status != MessageStatus.COMPLAINED:
            cls = _CLASS_OF_ACTION.get(item.action, BounceClass.SOFT)
        domain = recipient.rpartition("@")[2]
        event = make_status_event(
            message_id=message_id,
            team_id=team,
            status=item.status,
            recipient=recipient,
            recipient_domain=domain,
            provider_group=provider_group(self.config, domain),
            kind=kind,
            attempt=REPORT_ATTEMPT,
            smtp_code=item.code,
            enhanced_code=item.enhanced,
            smtp_response=item.text[:1000],
            bounce_class=cls,
            bounce_reason=item.reason,
            bounce_action=item.action,
            reason=item.text[:500],
        )
        outbox = RedisKeys.event_outbox(slot_group(team))
        add_to_outbox(pipe, Topic.MESSAGE_STATUSES, message_id, event, outbox)
        if item.status == MessageStatus.DEFERRED:
            return
        if item.action == "suppress":
            pipe.sadd(RedisKeys.suppression(team), recipient)
            why = suppression_reason(item.reason, "report", now)
            pipe.hset(RedisKeys.suppression_reasons(team), recipient, why)
            metrics.SUPPRESSIONS.labels(item.reason).inc()
        elif item.action == "fix_our_side":
            queue_fix_our_side(pipe, team, item.reason, now)
        elif item.status == MessageStatus.BOUNCED and window().counts(item.reason, item.action):
            window().queue_soft_bounce(pipe, team, recipient, item.reason, now)
