"""Sending domains: DKIM key generation, the DNS records to publish, and keeping the
result of the DNS checks on the domain's row.

The checks themselves are deliverability.domain_checks (the one implementation: SPF with the
10-lookup limit, DKIM key match, DMARC policy and rua, MX, return path); the alerting
when one starts failing is deliverability.domain_alerts. This module maps the API's record
names and statuses onto them: SPF, DKIM (RSA) and DMARC are required for the Redis
"ready" flag the MTA reads; the rest are reported but optional.
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import dns.resolver
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from api.models import Domain
from api.services.accounts import administrator_emails
from deliverability import domain_checks
from deliverability.domain_alerts import (
    AlertOutcome,
    PublishHint,
    Transition,
    find_transitions,
    raise_alerts,
    settled_status,
)
from deliverability.domain_checks import DomainCheckReport, ExpectedRecords
from kibamail.contracts import DomainCheckEvent
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from kibamail.system_mail import sender_address

log = logging.getLogger(__name__)

# API record name -> deliverability.domain_checks check name (the API predates the ed25519 key).
RECORD_CHECKS = {
    "spf": "spf",
    "dkim_rsa": "dkim",
    "dkim_ed25519": "dkim_ed25519",
    "dmarc": "dmarc",
    "return_path": "return_path",
    "tracking": "tracking",
    "ownership": "ownership",
}
# Statuses rows written before the checks were unified still carry.
LEGACY_STATUS = {"verified": "pass", "missing": "fail", "mismatch": "fail", "error": "unknown"}


@dataclass(frozen=True)
class DnsRecord:
    key: str
    type: str
    name: str
    value: str
    required: bool

    @property
    def check(self) -> str:
        return RECORD_CHECKS[self.key]


def generate_keys(domain_name: str, team_id: str) -> Domain:
    """A Domain row with fresh RSA-2048 and ed25519 DKIM keys and unique selectors."""
    suffix = secrets.token_hex(3)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    rsa_public = base64.b64encode(
        rsa_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    ed_key = ed25519.Ed25519PrivateKey.generate()
    ed_private = ed_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    ed_public = ed_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return Domain(
        team_id=team_id,
        name=domain_name.lower(),
        rsa_selector=f"km{suffix}r",
        rsa_private_pem=rsa_pem,
        rsa_public_b64=rsa_public,
        ed25519_selector=f"km{suffix}e",
        ed25519_private_b64=base64.b64encode(ed_private).decode(),
        ed25519_public_b64=base64.b64encode(ed_public).decode(),
        status="pending",
        record_status={},
        verify_token=secrets.token_hex(16),
    )


def spf_include(settings: Settings) -> str:
    return f"_spf.{settings.mta.hostname}"


def tracking_target(settings: Settings) -> str:
    return urlparse(settings.api.public_url).hostname or settings.mta.hostname


def dmarc_rua(settings: Settings, team_id: str) -> str:
    """The team's DMARC report address: ``dmarc+<team id>.<mac>@`` the MTA. The MTA
    refuses a bare or wrongly signed tag, so no one files reports for a team by guessing
    its id (kibamail.report_tokens; the key is ``settings.mta.report_token_secret``)."""
    from kibamail.report_tokens import rua_tag

    tag = rua_tag(settings.mta.report_token_secret, team_id)
    return f"mailto:dmarc+{tag}@{settings.mta.hostname}"


def dns_records(domain: Domain, settings: Settings, contested: bool = False) -> list[DnsRecord]:
    """The records to publish; the ownership token is required only while another team
    has added the same name (``ownership_contested``)."""
    tracking_host = tracking_target(settings)
    owner_name, owner_value = domain_checks.ownership_record(domain.name, domain.verify_token or "")
    return [
        DnsRecord("spf", "TXT", domain.name, f"v=spf1 include:{spf_include(settings)} ~all", True),
        DnsRecord(
            "dkim_rsa",
            "TXT",
            f"{domain.rsa_selector}._domainkey.{domain.name}",
            f"v=DKIM1; k=rsa; p={domain.rsa_public_b64}",
            True,
        ),
        DnsRecord(
            "dkim_ed25519",
            "TXT",
            f"{domain.ed25519_selector}._domainkey.{domain.name}",
            f"v=DKIM1; k=ed25519; p={domain.ed25519_public_b64}",
            False,
        ),
        DnsRecord(
            "dmarc",
            "TXT",
            f"_dmarc.{domain.name}",
            f"v=DMARC1; p=none; rua={dmarc_rua(settings, domain.team_id)}",
            True,
        ),
        DnsRecord("return_path", "CNAME", f"bounces.{domain.name}", settings.mta.hostname, False),
        DnsRecord("tracking", "CNAME", f"track.{domain.name}", tracking_host, False),
        DnsRecord("ownership", "TXT", owner_name, owner_value, contested),
    ]


def expected_records(
    domain: Domain, settings: Settings, contested: bool = False
) -> ExpectedRecords:
    return ExpectedRecords(
        spf_include=spf_include(settings),
        dkim_selector=domain.rsa_selector,
        dkim_public_key=domain.rsa_public_b64,
        return_path_host=f"bounces.{domain.name}",
        return_path_target=settings.mta.hostname,
        dmarc_rua=dmarc_rua(settings, domain.team_id),
        dmarc_rua_legacy=(
            f"mailto:dmarc+{domain.team_id}@{settings.mta.hostname}",
            f"mailto:dmarc@{settings.mta.hostname}",
        ),
        secondary_dkim_selector=domain.ed25519_selector,
        secondary_dkim_public_key=domain.ed25519_public_b64,
        tracking_host=f"track.{domain.name}",
        tracking_target=tracking_target(settings),
        ownership_token=domain.verify_token or "",
        ownership_required=contested,
    )


def ownership_contested(db: Session, domain: Domain) -> bool:
    """True when another team has also added this name and this row did not already hold
    it verified before that: then only the team that publishes its own token in DNS can
    become ready. A team verified before anyone else added the name keeps its standing, so
    a squatter's row can never make the owner's re-checks fail."""
    others = db.scalar(
        select(func.min(Domain.created_at)).where(
            Domain.name == domain.name, Domain.team_id != domain.team_id
        )
    )
    if others is None:
        return False
    settled = domain.status == "verified" and domain.verified_at is not None
    return not (settled and domain.verified_at is not None and domain.verified_at <= others)


def platform_domain(settings: Settings) -> str:
    """The notification sender's domain: platform mail only, never a team's domain."""
    return sender_address(settings).rsplit("@", 1)[1].lower()


def reserved_for_platform(settings: Settings, name: str, team_id: str) -> bool:
    """True when ``name`` is the platform's notification domain (or under it) and
    ``team_id`` is not the platform team."""
    reserved, name = platform_domain(settings), name.lower().rstrip(".")
    covered = name == reserved or name.endswith(f".{reserved}")
    return covered and team_id != settings.notifications.team_id


def make_resolver(settings: Settings) -> dns.resolver.Resolver:
    return domain_checks.make_resolver(settings.mta.dns_servers, settings.mta.dns_port)


def stored_checks(domain: Domain) -> dict[str, dict[str, Any]]:
    """The row's per-check results keyed by check name (legacy rows: by record name)."""
    stored = dict(domain.record_status or {})
    for record, check in RECORD_CHECKS.items():
        if record != check and record in stored and check not in stored:
            stored[check] = stored.pop(record)
    return stored


def api_status(entry: dict[str, Any] | None) -> str:
    """verified | missing | mismatch | error | not_checked (the API's per-record wording)."""
    if not entry:
        return "not_checked"
    if "check" not in entry:
        return str(entry.get("status", "not_checked"))
    if entry["check"] == "pass":
        return "verified"
    if entry["check"] == "unknown":
        return "error"
    return "mismatch" if entry.get("found") else "missing"


def check_status(entry: dict[str, Any] | None) -> str:
    """pass | fail | unknown | not_checked (the checks' own wording)."""
    if not entry:
        return "not_checked"
    return str(entry.get("check") or LEGACY_STATUS.get(entry.get("status", ""), "not_checked"))


def _settled(entry: dict[str, Any] | None) -> str | None:
    if not entry:
        return None
    if "check" in entry:
        return entry.get("settled")
    return {"pass": "pass", "fail": "fail"}.get(LEGACY_STATUS.get(entry.get("status", ""), ""))


def publish_hints(
    domain: Domain, settings: Settings, contested: bool = False
) -> dict[str, PublishHint]:
    records = dns_records(domain, settings, contested)
    return {r.check: PublishHint(r.type, r.name, r.value) for r in records}


@dataclass(frozen=True)
class DomainVerification:
    report: DomainCheckReport
    transitions: list[Transition]
    readiness: str
    alerts: AlertOutcome


EventPublisher = Callable[[DomainCheckEvent], None]


def verify_domain(
    db: Session,
    domain: Domain,
    settings: Settings,
    redis: Any,
    publish: EventPublisher,
    checked_at: datetime | None = None,
) -> DomainVerification:
    """Check the domain's records, update readiness at once, alert on what started
    failing, then record the result on the row (the caller commits). A raise leaves the
    row as it was, so a retry sees the same transitions (same event ids, one email)."""
    checked_at = checked_at or datetime.now(UTC)
    contested = ownership_contested(db, domain)
    report = domain_checks.check_domain(
        domain.name, expected_records(domain, settings, contested), make_resolver(settings)
    )
    previous = stored_checks(domain)
    transitions = find_transitions(
        {name: _settled(entry) for name, entry in previous.items()},
        report,
        was_ready=domain.status == "verified",
    )
    if report.ready:
        publish_dkim_key(redis, domain)  # before the flag: the MTA signs as soon as it sees it
    readiness = domain_checks.apply_readiness(redis, domain.team_id, report)
    alerts = raise_alerts(
        redis,
        settings,
        team_id=domain.team_id,
        administrators=administrator_emails(db, [domain.team_id]).get(domain.team_id, []),
        report=report,
        transitions=transitions,
        hints=publish_hints(domain, settings, contested),
        checked_at=checked_at,
        since=domain.last_checked_at.isoformat() if domain.last_checked_at else "never",
        publish=publish,
    )
    domain.record_status = {
        name: {
            "check": check.status,
            "settled": settled_status(_settled(previous.get(name)), check.status),
            "found": check.found,
            "reasons": check.reasons,
            "details": check.details,
        }
        for name, check in report.checks.items()
    }
    domain.last_checked_at = checked_at.astimezone(UTC).replace(tzinfo=None)
    if report.ready:
        domain.status = "verified"
        domain.verified_at = domain.verified_at or domain.last_checked_at
    elif report.failing:
        domain.status = "pending"
    return DomainVerification(report, transitions, readiness, alerts)


def publish_dkim_key(redis: Any, domain: Domain) -> None:
    """The signing key the MTA reads for this team's mail from this domain (RSA: accepted
    by every receiver); another team's row of the same name has its own key."""
    redis.hset(
        RedisKeys.dkim_key(domain.team_id, domain.name),
        mapping={
            "selector": domain.rsa_selector,
            "algorithm": "rsa-sha256",
            "private_key": domain.rsa_private_pem,
        },
    )


def set_ready_flag(redis: Any, domain: Domain, ready: bool) -> None:
    """Without DNS checks: the demo bootstrap (ready) and domain removal (not ready)."""
    if ready:
        publish_dkim_key(redis, domain)
    domain_checks.set_ready(redis, domain.team_id, domain.name, ready)


def withdraw_domain(redis: Any, domain: Domain) -> None:
    """Domain removal: this team's ready flag and signing key go; other teams' stay."""
    set_ready_flag(redis, domain, False)
    redis.delete(RedisKeys.dkim_key(domain.team_id, domain.name))


# Hourly schedule, with slack so a run a little early still finds last hour's domains due.
RECHECK_AFTER = timedelta(minutes=55)


def recheck_due_domains(
    sessions: sessionmaker[Session],
    settings: Settings,
    redis: Any,
    publish: EventPublisher,
    checked_at: datetime | None = None,
    names: Collection[str] = (),
) -> dict[str, int]:
    """Re-verify domains not checked for RECHECK_AFTER (only ``names`` if given), one
    transaction each; a domain that raises is counted in ``errors`` and the others still
    run. Returns counts."""
    checked_at = checked_at or datetime.now(UTC)
    cutoff = checked_at.astimezone(UTC).replace(tzinfo=None) - RECHECK_AFTER
    # Verified yet never checked means marked ready by api.bootstrap (demo, tests): there
    # is no DNS for those, so a re-check would only hold their mail.
    never_checked = and_(Domain.last_checked_at.is_(None), Domain.status != "verified")
    query = select(Domain.id).where(or_(never_checked, Domain.last_checked_at < cutoff))
    if names:
        query = query.where(Domain.name.in_([n.lower() for n in names]))
    with sessions() as db:
        due = list(db.scalars(query))
    counts = dict.fromkeys(
        ("due", "ready", "not_ready", "unknown", "events", "emails", "errors"), 0
    )
    counts["due"] = len(due)
    for domain_id in due:
        try:
            with sessions.begin() as db:
                domain = db.get(Domain, domain_id)
                if domain is None:
                    continue
                outcome = verify_domain(db, domain, settings, redis, publish, checked_at)
        except Exception:
            log.exception("re-check of domain %s failed; it stays due", domain_id)
            counts["errors"] += 1
            continue
        report = outcome.report
        state = "ready" if report.ready else "not_ready" if report.failing else "unknown"
        counts[state] += 1
        counts["events"] += outcome.alerts.events
        counts["emails"] += int(outcome.alerts.emailed)
    return counts
