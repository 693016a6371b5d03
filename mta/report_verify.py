"""Which inbound bounce/complaint items may change state, and recording those once.

Anyone can mail a DSN or an ARF report quoting any message id. An item counts only when
it is tied to a recipient a remote MX really accepted (``mta.commit.record_sent``):

(a) the report came to a signed return path (``bounces+<ref>.<mac>@...``): the ref names
    the message, and the reported recipient must be one of that transaction's; or
(b) it came to a plain address: the quoted platform message id must have a sent record
    and the reported recipient must be in it.

Everything else (unknown id, right id but wrong recipient, unknown ref) is counted in
``kibamail_mta_forged_reports_total``, logged, and changes nothing. A counted item is
recorded once per (team, message, recipient, kind): a re-sent copy changes nothing more.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from kibamail.contracts import BounceClass, MessageStatus, Topic, TrafficKind
from kibamail.redis_keys import RedisKeys

from . import metrics
from .bounces import classify
from .commit import REPORT_WINDOW_SECONDS
from .config import MtaConfig
from .events import add_to_outbox, make_status_event
from .policies import provider_group

log = logging.getLogger(__name__)

# Reports arrive after the synchronous attempts; a high attempt number keeps their event
# ids distinct from (and stable across re-sent copies of) the same report.
REPORT_ATTEMPT = 1000
# A claimed (team, message, recipient, kind) whose MULTI never ran is free again after this.
CLAIM_SECONDS = 60

REFUSALS = {
    "unknown_return_path": "the return path names no message we sent",
    "no_message_id": "no message id of ours is quoted",
    "unknown_message": "no message of ours has that id",
    "unknown_recipient": "that message was never sent to the reported recipient",
    "recipient_not_in_transaction": "the return path was not used for the reported recipient",
}


@dataclass(frozen=True)
class ReportItem:
    message_id: str
    recipient: str
    status: MessageStatus
    code: int
    enhanced: str
    text: str


@dataclass
class RecordResult:
    recorded: int = 0
    duplicates: int = 0
    refused: str = ""  # the reason of the first forged item ("" if none)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class ReportRecorder:
    def __init__(self, redis: Any, config: MtaConfig) -> None:
        self.redis = redis
        self.config = config

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

    async def record(
        self, items: list[ReportItem], ref: str | None, peer: str = ""
    ) -> RecordResult:
        """``ref``: the verified return-path ref the report was addressed to, if any."""
        result = RecordResult()
        token_message = ""
        if ref is not None:
            raw = await self.redis.get(RedisKeys.return_path(ref))
            token_message = _text(raw) if raw is not None else ""
        pipe = self.redis.pipeline(transaction=True)
        claimed: list[str] = []
        for item in items:
            if ref is not None and not token_message:
                self._forged(result, "unknown_return_path", item, peer)
                continue
            message_id = token_message or item.message_id
            if not message_id:
                self._forged(result, "no_message_id", item, peer)
                continue
            raw_sent = await self.redis.hgetall(RedisKeys.sent_recipients(message_id))
            sent = {_text(k): _text(v) for k, v in raw_sent.items()}
            if not sent.get("team"):
                self._forged(result, "unknown_message", item, peer)
                continue
            sent_ref = sent.get(f"rcpt:{item.recipient}")
            if sent_ref is None:
                self._forged(result, "unknown_recipient", item, peer)
                continue
            if ref is not None and sent_ref != ref:
                self._forged(result, "recipient_not_in_transaction", item, peer)
                continue
            team = sent["team"]
            seen = RedisKeys.report_seen(team, message_id, item.recipient, item.status.value)
            if not await self.redis.set(seen, "claimed", nx=True, ex=CLAIM_SECONDS):
                result.duplicates += 1
                continue
            claimed.append(seen)
            self._queue(pipe, item, message_id, team, TrafficKind(sent["kind"]))
            pipe.set(seen, "1", ex=REPORT_WINDOW_SECONDS)
            result.recorded += 1
        if claimed:
            try:
                await pipe.execute()
            except Exception:
                await self.redis.delete(*claimed)  # a re-sent copy may try again
                raise
        return result

    def _queue(
        self, pipe: Any, item: ReportItem, message_id: str, team: str, kind: TrafficKind
    ) -> None:
        if item.status == MessageStatus.COMPLAINED:
            cls = BounceClass.NONE
        else:
            cls = classify(item.code, item.enhanced, item.text)
        domain = item.recipient.rpartition("@")[2]
        event = make_status_event(
            message_id=message_id,
            team_id=team,
            status=item.status,
            recipient=item.recipient,
            recipient_domain=domain,
            provider_group=provider_group(self.config, domain),
            kind=kind,
            attempt=REPORT_ATTEMPT,
            smtp_code=item.code,
            enhanced_code=item.enhanced,
            smtp_response=item.text[:1000],
            bounce_class=cls,
            reason=item.text[:500],
        )
        add_to_outbox(pipe, Topic.MESSAGE_STATUSES, message_id, event)
        if item.status == MessageStatus.COMPLAINED or cls == BounceClass.HARD:
            pipe.sadd(RedisKeys.suppression(team), item.recipient)
