"""Parsed report shapes shared by the parser, the CLI, storage and the API.

Plain dataclasses (not pydantic) because the parser builds tens of thousands of
records per second and validation already happened while parsing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

ReportType = Literal["aggregate", "forensic", "smtp_tls"]


class ReportError(ValueError):
    """A file (or one part of it) is not a usable report; the message says why."""


@dataclass(slots=True)
class DkimAuthResult:
    domain: str
    selector: str
    result: str
    human_result: str | None = None


@dataclass(slots=True)
class SpfAuthResult:
    domain: str
    scope: str
    result: str
    human_result: str | None = None


@dataclass(slots=True)
class PolicyOverride:
    type: str
    comment: str | None = None


@dataclass(slots=True)
class AggregateRecord:
    source_ip: str
    count: int
    disposition: str
    dkim: str
    spf: str
    header_from: str
    envelope_from: str | None = None
    envelope_to: str | None = None
    policy_override_reasons: list[PolicyOverride] = field(default_factory=list)
    auth_results: dict[str, list[Any]] = field(default_factory=lambda: {"dkim": [], "spf": []})

    @property
    def dmarc_pass(self) -> bool:
        return self.dkim == "pass" or self.spf == "pass"


@dataclass(slots=True)
class AggregateReport:
    report_metadata: dict[str, Any]
    policy_published: dict[str, Any]
    records: list[AggregateRecord]
    schema: str = "rfc7489"
    warnings: list[str] = field(default_factory=list)
    source: str = ""
    report_type: ReportType = "aggregate"

    @property
    def total_messages(self) -> int:
        return sum(r.count for r in self.records)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class ForensicReport:
    """An RFC 6591 failure report: one message that failed DMARC at a receiver."""

    report_id: str
    feedback_type: str
    arrival_date: int | None
    source_ip: str | None
    reported_domain: str | None
    fields: dict[str, Any]
    original_headers: dict[str, str]
    warnings: list[str] = field(default_factory=list)
    source: str = ""
    report_type: ReportType = "forensic"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class TlsPolicyResult:
    policy_type: str
    policy_domain: str
    policy_strings: list[str]
    mx_hosts: list[str]
    successful_sessions: int
    failed_sessions: int
    failure_details: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class TlsReport:
    """An RFC 8460 SMTP TLS report (JSON)."""

    report_id: str
    organization_name: str
    contact_info: str | None
    begin: int
    end: int
    policies: list[TlsPolicyResult]
    warnings: list[str] = field(default_factory=list)
    source: str = ""
    report_type: ReportType = "smtp_tls"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Report = AggregateReport | ForensicReport | TlsReport


@dataclass(slots=True)
class ParseOutcome:
    """Everything one input produced: reports found and parts rejected (with reasons)."""

    source: str
    reports: list[Report] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.reports) and not self.errors
