"""Inbound mail on port 25: asynchronous bounces, delay warnings, auto-replies,
complaints (ARF, RFC 5965) and DMARC/TLS reports.

Only our own domains are accepted (no relaying), plus signed return paths
(``bounces+<token>@bounces.<sending domain>``, see ``mta.return_path``). Every message is
read by the one parser (``kibamail.bounces.parse.parse_message``: RFC 3464 DSNs, the
formats of real MTAs and providers, ARF, auto-replies) and classified by the one
classifier the delivery worker uses for synchronous replies. Per recipient found:

- a bounce becomes a ``bounced`` status event with its reason and action; only the
  ``suppress`` action puts the address on the team's suppression list;
- a delay warning becomes a ``deferred`` event, never a bounce;
- a delivery notice, an auto-reply or a message that is no report changes nothing
  (250 "not a bounce");
- a complaint becomes a ``complained`` event and suppresses the address for that team;
  an ARF not-spam report lifts the suppression the MTA made.

An item changes state only when it is tied to a recipient we really delivered to
(``mta.report_verify``: signed return path, then platform id, then the original
Message-ID): forged reports change nothing. DMARC/TLS reports go to
``dmarc+<team id>.<mac>@...`` (``kibamail.report_tokens``); a bare or wrongly signed tag
is refused at RCPT.

Parsing and storing run in worker processes (``mta.report_pool``) with caps on size,
MIME parts, nesting, time and memory (``kibamail.mime_limits``): a hostile report is
refused (552/554) and never stalls the event loop the submission listeners share.
"""

from __future__ import annotations

import email
import email.policy
import logging
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from kibamail import dead_letters
from kibamail.bounces.model import Finding, Kind, Reason
from kibamail.bounces.parse import parse_message
from kibamail.contracts import MessageStatus
from kibamail.mime_limits import MimeLimitError, check_size, check_structure
from kibamail.redis_keys import RedisKeys
from kibamail.report_tokens import RETURN_PATH_MAILBOX, verify_return_path, verify_rua_tag
from kibamail.settings import Settings

from . import metrics
from .config import MtaConfig
from .report_pool import JobLimitError, PoolBusy, ReportPool
from .report_verify import REFUSALS, REPORT_ATTEMPT, ReportItem, ReportRecorder

__all__ = [
    "REPORT_ATTEMPT",
    "InboundProcessor",
    "ReportItem",
    "parse_inbound",
    "parse_report",
    "parse_report_capped",
]

log = logging.getLogger(__name__)

PARSE_SECONDS = 30.0
# Dead letters of this listener carry this source (not a topic: replay is by re-sending).
INBOUND_SOURCE = "smtp-inbound"
INGEST_SECONDS = 120.0
# The slot group whose MTA outbox carries this listener's dead letters (no team to go by).
DEAD_LETTER_GROUP = 0

_STATUS_OF_KIND = {
    Kind.BOUNCE: MessageStatus.BOUNCED,
    Kind.DELAYED: MessageStatus.DEFERRED,
    Kind.COMPLAINT: MessageStatus.COMPLAINED,
}
# Complaint findings that are a person's complaint or its retraction (an ARF
# auth-failure report is a DMARC failure report about us, not a complaint).
_COMPLAINT_REASONS = {Reason.COMPLAINT, Reason.NOT_SPAM}


@dataclass
class InboundParse:
    """What one received message holds: its kind, the items that may change state, and
    the kind of every recipient found (for metrics)."""

    kind: str
    items: list[ReportItem] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)


def _item(finding: Finding) -> ReportItem | None:
    status = _STATUS_OF_KIND.get(finding.kind)
    if status is None:  # delivered, relayed, auto-reply: never a state change
        return None
    if status == MessageStatus.COMPLAINED and finding.reason not in _COMPLAINT_REASONS:
        return None
    code = finding.smtp_code
    if not code and status != MessageStatus.COMPLAINED:
        code = 450 if status == MessageStatus.DEFERRED or finding.status[:1] == "4" else 550
    return ReportItem(
        message_id=finding.platform_message_id or finding.message_id,
        recipient=finding.recipient.strip().lower(),
        status=status,
        code=code,
        enhanced=finding.status,
        text=finding.diagnostic or f"{finding.reason.value} ({finding.source_format})",
        reason=finding.reason.value,
        action=finding.action.value,
        return_path=finding.return_path,
        header_message_id=finding.message_id,
    )


def parse_inbound(data: bytes) -> InboundParse:
    """The parser's report as inbound items; raises ValueError for a message the parser
    could not read at all (it is dead-lettered, not dropped)."""
    report = parse_message(data)
    unreadable = [w for w in report.warnings if w.startswith("unparseable")]
    if report.kind is Kind.NONE and unreadable:
        raise ValueError(unreadable[0])
    items = [item for item in map(_item, report.findings) if item is not None]
    return InboundParse(report.kind.value, items, [f.kind.value for f in report.findings])


def _bounces_and_complaints(parsed: InboundParse) -> list[ReportItem]:
    return [
        item
        for item in parsed.items
        if item.status != MessageStatus.DEFERRED and item.reason != Reason.NOT_SPAM
    ]


def parse_report(data: bytes) -> list[ReportItem]:
    """The bounced/complained items of a report ([] for anything else); an item's message
    id is "" when the report quotes none (a signed return path still names it)."""
    return _bounces_and_complaints(parse_inbound(data))


def parse_inbound_capped(data: bytes) -> InboundParse:
    """parse_inbound for a worker process: raises MimeLimitError beyond the caps."""
    check_size(data)
    check_structure(email.message_from_bytes(data, policy=email.policy.compat32))
    return parse_inbound(data)


def parse_report_capped(data: bytes) -> list[ReportItem]:
    """parse_report within the caps (MimeLimitError beyond them)."""
    return _bounces_and_complaints(parse_inbound_capped(data))


_STORE: dict[str, Any] = {}


def ingest_report_capped(settings: Settings, data: bytes, team_id: str) -> tuple[bool, str]:
    """DMARC/TLS report storage for a worker process: (accepted, reasons if not)."""
    from deliverability.ingest import ingest_message
    from kibamail.clients import clickhouse_client

    if "clickhouse" not in _STORE:
        _STORE["clickhouse"] = clickhouse_client(settings, autogenerate_session_id=False)
    result = ingest_message(data, _STORE["clickhouse"], team_id)
    return result.accepted, "; ".join(result.errors)


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
        self.recorder = ReportRecorder(redis, config, self.secret)

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
                RedisKeys.event_outbox(DEAD_LETTER_GROUP),
                dead_letters.outbox_entry(INBOUND_SOURCE, data, reason),
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
            parsed = await self._in_worker(
                server, parse_inbound_capped, data, seconds=PARSE_SECONDS
            )
        except PoolBusy:
            return "451 4.3.2 Too many reports in progress, try again later"
        except (MimeLimitError, JobLimitError) as exc:
            return self._over_cap(exc)
        except Exception as exc:
            log.exception("unparseable inbound report; dead-lettered")
            return await self.dead_letter(data, f"unparseable inbound report: {exc}")
        for kind in parsed.kinds:
            metrics.INBOUND_FINDINGS.labels(kind).inc()
        if not parsed.items:
            if parsed.kind == Kind.NONE.value:
                return "250 2.0.0 OK (not a report)"
            return f"250 2.0.0 OK (not a bounce: {parsed.kind}; nothing changed)"
        peer = str((session.peer or ("",))[0])
        result = await self.recorder.record(parsed.items, self.return_ref(envelope), peer)
        if result.refused and not (result.recorded or result.duplicates):
            return f"550 5.7.1 Report refused: {REFUSALS[result.refused]}"
        return f"250 2.0.0 OK ({result.recorded} report items recorded)"
