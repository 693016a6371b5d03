"""Inbound mail on port 25: asynchronous bounces (DSN, RFC 3464), complaints (ARF, RFC
5965) and DMARC/TLS reports.

Only our own domains are accepted (no relaying), plus signed return paths
(``bounces+<token>@bounces.<sending domain>``, see ``mta.return_path``). A DSN with
``Action: failed`` becomes a ``bounced`` status event for the original message; an ARF
``abuse`` report becomes a ``complained`` event. Hard bounces and complaints put the
address on the team's suppression list. An item changes state only when it is tied to a
recipient we really delivered to (``mta.report_verify``): forged reports change nothing.
DMARC/TLS reports go to ``dmarc+<team id>.<mac>@...`` (``kibamail.report_tokens``); a
bare or wrongly signed tag is refused at RCPT.

Parsing and storing run in worker processes (``mta.report_pool``) with caps on size,
MIME parts, nesting, time and memory (``kibamail.mime_limits``): a hostile report is
refused (552/554) and never stalls the event loop the submission listeners share.
"""

from __future__ import annotations

import email
import email.policy
import logging
import re
from email.message import Message
from typing import Any, cast

from aiosmtpd.smtp import SMTP, Envelope, Session

from kibamail import dead_letters
from kibamail.contracts import MessageStatus
from kibamail.intake import original_message_id
from kibamail.mime_limits import MimeLimitError, check_size, check_structure
from kibamail.redis_keys import RedisKeys
from kibamail.report_tokens import RETURN_PATH_MAILBOX, verify_return_path, verify_rua_tag
from kibamail.settings import Settings

from . import metrics
from .config import MtaConfig
from .report_pool import JobLimitError, PoolBusy, ReportPool
from .report_verify import REFUSALS, REPORT_ATTEMPT, ReportItem, ReportRecorder

__all__ = ["REPORT_ATTEMPT", "InboundProcessor", "ReportItem", "parse_report"]

log = logging.getLogger(__name__)

PARSE_SECONDS = 30.0
# Dead letters of this listener carry this source (not a topic: replay is by re-sending).
INBOUND_SOURCE = "smtp-inbound"
INGEST_SECONDS = 120.0
_ADDR = re.compile(r"<?([^<>;\s]+@[^<>;\s]+)>?")


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
    """Bounced/complained items of a DSN or ARF report ([] for anything else); an item's
    message id is "" when the report quotes none (a signed return path still names it)."""
    return _report_items(email.message_from_bytes(data, policy=email.policy.compat32))


def parse_report_capped(data: bytes) -> list[ReportItem]:
    """parse_report for a worker process: raises MimeLimitError beyond the caps."""
    check_size(data)
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    check_structure(msg)
    return _report_items(msg)


_STORE: dict[str, Any] = {}


def ingest_report_capped(settings: Settings, data: bytes, team_id: str) -> tuple[bool, str]:
    """DMARC/TLS report storage for a worker process: (accepted, reasons if not)."""
    from deliverability.ingest import ingest_message
    from kibamail.clients import clickhouse_client

    if "clickhouse" not in _STORE:
        _STORE["clickhouse"] = clickhouse_client(settings, autogenerate_session_id=False)
    result = ingest_message(data, _STORE["clickhouse"], team_id)
    return result.accepted, "; ".join(result.errors)


def _report_items(msg: Message) -> list[ReportItem]:
    if msg.get_content_type() != "multipart/report":
        return []
    kind = str(msg.get_param("report-type") or "").lower()
    original = _original_headers(msg)
    message_id = original_message_id(original) if original is not None else ""
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


class InboundProcessor:
    """aiosmtpd handler for port 25."""

    def __init__(self, settings: Settings, config: MtaConfig, redis: Any) -> None:
        self.redis = redis
        self.settings = settings
        self.config = config
        self.secret = settings.mta.report_token_secret
        self.report_mailboxes = {m.lower() for m in config.submission.report_mailboxes}
        self.domains = {d.lower() for d in config.submission.inbound_domains} or {
            settings.mta.hostname.lower()
        }
        self.pool = ReportPool()
        self.recorder = ReportRecorder(redis, config)

    def close(self) -> None:
        self.pool.close()

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
        local, _, domain = address.rpartition("@")
        box, plus, tag = local.partition("+")
        ours = domain.lower() in self.domains
        if box.lower() == RETURN_PATH_MAILBOX and plus:
            # A signed return path: ours on any domain (bounces.<sending domain> CNAMEs).
            if verify_return_path(self.secret, local) is None:
                if not ours:
                    return "550 5.7.1 Relaying denied"
                self._refused("bad_token", address, session)
                return "550 5.7.1 Bounce address token invalid: not a return path we issued"
        elif not ours:
            return "550 5.7.1 Relaying denied"
        elif box.lower() in self.report_mailboxes and plus and not self._rua_ok(tag):
            self._refused("rua_tag", address, session)
            return "550 5.7.1 Report address tag invalid: use the rua address shown for the domain"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    def _rua_ok(self, tag: str) -> bool:
        return verify_rua_tag(self.secret, tag) is not None

    @staticmethod
    def _refused(reason: str, address: str, session: Session) -> None:
        metrics.FORGED_REPORTS.labels(reason).inc()
        log.warning("report address %r refused (%s) from %s", address, reason, session.peer)

    def report_team(self, envelope: Envelope) -> str | None:
        """The team a DMARC/TLS report is for, if it was sent to a report mailbox.

        `dmarc+<team id>.<mac>@...` names the team (verified at RCPT); plain `dmarc@...`
        gives "" (no team).
        """
        for rcpt in envelope.rcpt_tos:
            local = rcpt.rpartition("@")[0]
            box, _, tag = local.partition("+")
            if box.lower() in self.report_mailboxes:
                return (verify_rua_tag(self.secret, tag) or "") if tag else ""
        return None

    def return_ref(self, envelope: Envelope) -> str | None:
        """The ref of the signed return path the report was sent to, if any."""
        for rcpt in envelope.rcpt_tos:
            ref = verify_return_path(self.secret, rcpt.rpartition("@")[0])
            if ref is not None:
                return ref
        return None

    async def _in_worker(self, server: SMTP, fn: Any, *args: Any, seconds: float) -> Any:
        # aiosmtpd's idle timer only restarts on a new command; parsing or storing a large
        # report can outlast it, so keep the session alive while we work for the sender.
        return await self.pool.run(fn, *args, seconds=seconds, keepalive=server._reset_timeout)

    @staticmethod
    def _over_cap(exc: Exception) -> str:
        reason = str(exc)[:200]
        label = "size" if "too large" in reason else "structure"
        if isinstance(exc, JobLimitError):
            label = "time_or_memory"
        metrics.INBOUND_REFUSED.labels(label).inc()
        log.warning("inbound report refused over a cap: %s", reason)
        if label == "size":
            return f"552 5.3.4 Report refused: {reason}"
        return f"554 5.6.0 Report refused: {reason}"

    async def ingest_dmarc(self, server: SMTP, data: bytes, team_id: str) -> str:
        """Store DMARC/TLS reports in ClickHouse; 550 with the reasons if there is none."""
        try:
            accepted, reasons = await self._in_worker(
                server, ingest_report_capped, self.settings, data, team_id, seconds=INGEST_SECONDS
            )
        except PoolBusy:
            return "451 4.3.2 Too many reports in progress, try again later"
        except (MimeLimitError, JobLimitError) as exc:
            return self._over_cap(exc)
        except Exception:
            log.exception("DMARC report storage failed; asking the sender to retry")
            return "451 4.3.0 report storage unavailable, try again later"
        if not accepted:
            reasons = reasons[:300].replace("\r", " ").replace("\n", " ")
            return f"550 5.6.0 no valid report: {reasons}"
        return "250 2.0.0 OK (report stored)"

    async def dead_letter(self, data: bytes, reason: str) -> str:
        """Set an unparseable report aside in the dead-letter store (through the MTA's
        durable outbox) before answering; if Redis cannot take it, the sender retries."""
        try:
            await self.redis.xadd(
                RedisKeys.EVENT_OUTBOX, dead_letters.outbox_entry(INBOUND_SOURCE, data, reason)
            )
        except Exception:
            log.exception("dead-lettering an inbound report failed; asking the sender to retry")
            return "451 4.3.0 report storage unavailable, try again later"
        return "250 2.0.0 OK (not a report; kept for review)"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        team = self.report_team(envelope)
        if team is not None:
            return await self.ingest_dmarc(server, data, team)
        try:
            items = await self._in_worker(server, parse_report_capped, data, seconds=PARSE_SECONDS)
        except PoolBusy:
            return "451 4.3.2 Too many reports in progress, try again later"
        except (MimeLimitError, JobLimitError) as exc:
            return self._over_cap(exc)
        except Exception as exc:
            log.exception("unparseable inbound report; dead-lettered")
            return await self.dead_letter(data, f"unparseable inbound report: {exc}")
        if not items:
            return "250 2.0.0 OK (not a report)"
        peer = str((session.peer or ("",))[0])
        result = await self.recorder.record(items, self.return_ref(envelope), peer)
        if result.refused and not (result.recorded or result.duplicates):
            return f"550 5.7.1 Report refused: {REFUSALS[result.refused]}"
        return f"250 2.0.0 OK ({result.recorded} report items recorded)"
