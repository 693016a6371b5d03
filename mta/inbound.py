"""Inbound mail on port 25: asynchronous bounces (DSN, RFC 3464) and complaints (ARF, RFC 5965).

Only our own domains are accepted (no relaying). A DSN with ``Action: failed`` becomes a
``bounced`` status event for the original message; an ARF ``abuse`` report becomes a
``complained`` event. Hard bounces and complaints put the address on the team's
suppression list. The original message is found by its platform id in the quoted
headers (X-Kibamail-Message-ID, else Message-ID; see ``kibamail.intake``) and attributed
to its team through the message mapping written at send time.
"""

from __future__ import annotations

import email
import email.policy
import logging
import re
import threading
from dataclasses import dataclass
from email.message import Message
from typing import Any, cast

from aiosmtpd.smtp import SMTP, Envelope, Session

from kibamail.contracts import (
    BounceClass,
    ContractError,
    MessageMapping,
    MessageStatus,
    Topic,
    deserialize,
)
from kibamail.intake import original_message_id
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings

from .bounces import classify
from .config import MtaConfig
from .events import add_to_outbox, make_status_event
from .policies import provider_group

log = logging.getLogger(__name__)

# Reports arrive after the synchronous attempts; a high attempt number keeps their event
# ids distinct from (and stable across re-sent copies of) the same report.
REPORT_ATTEMPT = 1000
_ADDR = re.compile(r"<?([^<>;\s]+@[^<>;\s]+)>?")


@dataclass(frozen=True)
class ReportItem:
    message_id: str
    recipient: str
    status: MessageStatus
    code: int
    enhanced: str
    text: str


def _address(value: str) -> str:
    match = _ADDR.search(value.split(";", 1)[-1])
    return match.group(1).lower() if match else ""


def _original_headers(report: Message) -> Message | None:
    for part in report.walk():
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                return cast(Message, payload[0])
        if ctype == "text/rfc822-headers":
            return email.message_from_string(
                cast(bytes, part.get_payload(decode=True)).decode("utf-8", "replace")
            )
    return None


def parse_report(data: bytes) -> list[ReportItem]:
    """Bounced/complained items of a DSN or ARF report ([] for anything else)."""
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    if msg.get_content_type() != "multipart/report":
        return []
    kind = str(msg.get_param("report-type") or "").lower()
    original = _original_headers(msg)
    message_id = original_message_id(original) if original is not None else ""
    if not message_id:
        return []
    items: list[ReportItem] = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if kind == "delivery-status" and ctype == "message/delivery-status":
            blocks = cast("list[Message]", part.get_payload())
            for block in blocks:
                action = (block.get("Action") or "").strip().lower()
                if action != "failed" or not block.get("Final-Recipient"):
                    continue
                status = (block.get("Status") or "5.0.0").strip()
                diagnostic = (block.get("Diagnostic-Code") or "").split(";", 1)[-1].strip()
                code_match = re.match(r"(\d{3})", diagnostic)
                code = int(code_match.group(1)) if code_match else 550
                items.append(
                    ReportItem(
                        message_id,
                        _address(block["Final-Recipient"]),
                        MessageStatus.BOUNCED,
                        code,
                        status,
                        diagnostic,
                    )
                )
        elif kind == "feedback-report" and ctype == "message/feedback-report":
            payload = part.get_payload()
            fields = cast(Message, payload[0]) if isinstance(payload, list) else part
            if (fields.get("Feedback-Type") or "").strip().lower() != "abuse":
                continue
            rcpt = fields.get("Original-Rcpt-To") or (original.get("To", "") if original else "")
            items.append(
                ReportItem(
                    message_id,
                    _address(rcpt or ""),
                    MessageStatus.COMPLAINED,
                    0,
                    "",
                    "complaint (ARF abuse report)",
                )
            )
    return [i for i in items if i.recipient]


def _warm_report_parser() -> None:
    import deliverability.ingest  # noqa: F401


class InboundProcessor:
    """aiosmtpd handler for port 25."""

    def __init__(self, settings: Settings, config: MtaConfig, redis: Any) -> None:
        self.redis = redis
        self.settings = settings
        self.config = config
        self.report_mailboxes = {m.lower() for m in config.submission.report_mailboxes}
        self._clickhouse: Any = None
        # Warm the report parser off the event loop: its first import takes seconds, which
        # must not count against a sender's SMTP timeout.
        threading.Thread(target=_warm_report_parser, daemon=True).start()
        self.domains = {d.lower() for d in config.submission.inbound_domains} or {
            settings.mta.hostname.lower()
        }

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        from .smtp_session import advertise_extensions

        return advertise_extensions(session, hostname, responses)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.rpartition("@")[2].lower() not in self.domains:
            return "550 5.7.1 Relaying denied"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    def report_team(self, envelope: Envelope) -> str | None:
        """The team a DMARC/TLS report is for, if it was sent to a report mailbox.

        `dmarc+<team id>@...` names the team; plain `dmarc@...` gives "" (no team).
        """
        for rcpt in envelope.rcpt_tos:
            local = rcpt.rpartition("@")[0].lower()
            box, _, tag = local.partition("+")
            if box in self.report_mailboxes:
                return tag
        return None

    async def ingest_dmarc(self, server: SMTP, data: bytes, team_id: str) -> str:
        """Store DMARC/TLS reports in ClickHouse; 550 with the reasons if there is none."""
        import asyncio

        from deliverability.ingest import ingest_message
        from kibamail.clients import clickhouse_client

        if self._clickhouse is None:
            self._clickhouse = clickhouse_client(self.settings, autogenerate_session_id=False)
        storing = asyncio.ensure_future(
            asyncio.to_thread(ingest_message, data, self._clickhouse, team_id)
        )
        try:
            # aiosmtpd's idle timer only restarts on a new command; storing a large report
            # can outlast it, so keep the session alive while we work for the sender.
            while not storing.done():
                server._reset_timeout()
                await asyncio.wait({storing}, timeout=1.0)
            result = storing.result()
        except Exception:
            log.exception("DMARC report storage failed; asking the sender to retry")
            return "451 4.3.0 report storage unavailable, try again later"
        if not result.accepted:
            reasons = "; ".join(result.errors)[:300].replace("\r", " ").replace("\n", " ")
            return f"550 5.6.0 no valid report: {reasons}"
        return "250 2.0.0 OK (report stored)"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        team = self.report_team(envelope)
        if team is not None:
            return await self.ingest_dmarc(server, envelope.original_content or b"", team)
        try:
            items = parse_report(envelope.original_content or b"")
        except Exception:
            log.exception("unparseable inbound report; accepted and ignored")
            return "250 2.0.0 OK (not a report)"
        recorded = await self.record(items)
        return f"250 2.0.0 OK ({recorded} report items recorded)"

    async def record(self, items: list[ReportItem]) -> int:
        pipe = self.redis.pipeline(transaction=True)
        count = 0
        for item in items:
            raw = await self.redis.get(RedisKeys.message_mapping(item.message_id))
            if raw is None:
                log.info("report for unknown message %s ignored", item.message_id)
                continue
            try:
                mapping = deserialize(MessageMapping, raw)
            except ContractError:
                continue
            if item.status == MessageStatus.COMPLAINED:
                cls = BounceClass.NONE
            else:
                cls = classify(item.code, item.enhanced, item.text)
            event = make_status_event(
                message_id=item.message_id,
                team_id=mapping.team_id,
                status=item.status,
                recipient=item.recipient,
                recipient_domain=item.recipient.rpartition("@")[2],
                provider_group=provider_group(self.config, item.recipient.rpartition("@")[2]),
                kind=mapping.kind,
                attempt=REPORT_ATTEMPT,
                smtp_code=item.code,
                enhanced_code=item.enhanced,
                smtp_response=item.text[:1000],
                bounce_class=cls,
                reason=item.text[:500],
            )
            add_to_outbox(pipe, Topic.MESSAGE_STATUSES, item.message_id, event)
            if item.status == MessageStatus.COMPLAINED or cls == BounceClass.HARD:
                pipe.sadd(RedisKeys.suppression(mapping.team_id), item.recipient)
            count += 1
        if count:
            await pipe.execute()
        return count
