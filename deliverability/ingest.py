"""The three ingestion routes (inbound SMTP, IMAP polling, API upload) share one path.

Bytes -> parse (never raises) -> store idempotently. A message or file that holds
no valid report is answered with its reasons and changes nothing.
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import logging
from dataclasses import dataclass, field
from typing import Any

from deliverability.parser import parse_bytes
from deliverability.sources import OFFLINE, SourceEnricher
from deliverability.storage import report_key, store_reports
from kibamail.mime_limits import check_size, check_structure

log = logging.getLogger(__name__)


@dataclass(slots=True)
class IngestResult:
    source: str
    stored: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    report_keys: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        """At least one report was usable (new or already known)."""
        return bool(self.report_keys)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "accepted": self.accepted,
            "stored": len(self.stored),
            "duplicates": len(self.duplicates),
            "report_keys": self.report_keys,
            "errors": self.errors,
            "warnings": self.warnings,
        }


def ingest_bytes(
    data: bytes,
    clickhouse_client: Any,
    *,
    name: str = "upload",
    team_id: str = "",
    via: str = "api",
    enricher: SourceEnricher = OFFLINE,
) -> IngestResult:
    """Parse any supported input and store the reports it holds."""
    outcome = parse_bytes(data, name)
    result = IngestResult(source=name, errors=list(outcome.errors))
    for report in outcome.reports:
        result.warnings.extend(f"{report.source}: {w}" for w in report.warnings)
        result.report_keys.append(report_key(report, team_id))
    if outcome.reports:
        stored = store_reports(
            clickhouse_client, outcome.reports, team_id=team_id, via=via, enricher=enricher
        )
        result.stored, result.duplicates = stored.stored, stored.duplicates
    return result


def ingest_message(raw_bytes: bytes, clickhouse_client: Any, team_id: str = "") -> IngestResult:
    """For the MTA's inbound side: one message received for a `rua`/`ruf`/TLS-RPT address.

    Accept the message (250) when ``result.accepted``; otherwise answer 550 with
    ``"; ".join(result.errors)`` — nothing was stored. Mail from strangers beyond the
    caps of ``kibamail.mime_limits`` (size, MIME parts, nesting) raises MimeLimitError
    before any report parsing, and stores nothing either.
    """
    check_size(raw_bytes)
    check_structure(email.message_from_bytes(raw_bytes, policy=email.policy.compat32))
    return ingest_bytes(raw_bytes, clickhouse_client, name="smtp", team_id=team_id, via="smtp")


@dataclass(slots=True)
class MailboxConfig:
    host: str
    port: int
    username: str
    password: str
    folder: str = "INBOX"
    use_ssl: bool = True
    timeout: float = 30.0
    max_messages: int = 500


def poll_imap(
    config: MailboxConfig, clickhouse_client: Any, team_id: str = ""
) -> list[IngestResult]:
    """Ingest every unseen message; mark each \\Seen only after its reports are stored.

    A message that holds no report is also marked seen (its reasons are returned
    and logged) so one bad message never blocks the mailbox; a storage failure
    leaves the message unseen for the next poll.
    """
    cls = imaplib.IMAP4_SSL if config.use_ssl else imaplib.IMAP4
    results: list[IngestResult] = []
    with cls(config.host, config.port, timeout=config.timeout) as imap:
        imap.login(config.username, config.password)
        status, _ = imap.select(config.folder)
        if status != "OK":
            raise RuntimeError(f"IMAP folder {config.folder!r} cannot be selected")
        status, found = imap.uid("SEARCH", None, "UNSEEN")  # type: ignore[arg-type]  # no charset
        uids = found[0].split()[: config.max_messages] if status == "OK" and found[0] else []
        for uid in uids:
            status, data = imap.uid("FETCH", uid, "(BODY.PEEK[])")
            raw = next((part[1] for part in data if isinstance(part, tuple)), None)
            if status != "OK" or raw is None:
                log.warning("IMAP uid %s could not be fetched", uid)
                continue
            result = ingest_bytes(
                raw, clickhouse_client, name=f"imap:{uid.decode()}", team_id=team_id, via="imap"
            )
            if result.errors:
                log.warning("IMAP uid %s: %s", uid, "; ".join(result.errors))
            imap.uid("STORE", uid, "+FLAGS", "(\\Seen)")
            results.append(result)
        imap.logout()
    return results
