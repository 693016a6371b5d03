"""Sender-domain checks (SPF, DKIM, DMARC, MX, return path) that gate sending.

Each record gets its own status: ``pass``, ``fail`` (the record is wrong or
missing: tell the customer what to publish) or ``unknown`` (DNS timed out or
answered SERVFAIL: say so, never call the domain broken). SPF lookup counting and
DMARC syntax use checkdmarc's per-record parsers on the same resolver.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import dns.exception
import dns.resolver
from checkdmarc.dmarc import DMARCError, parse_dmarc_record
from checkdmarc.spf import SPFError, SPFTooManyDNSLookups, parse_spf_record

from kibamail.redis_keys import RedisKeys

Status = Literal["pass", "fail", "unknown"]
REQUIRED_FOR_SENDING = ("spf", "dkim", "dmarc")
OWNERSHIP_PREFIX = "_kibamail-verify"
OWNERSHIP_TAG = "kibamail-verify="
_TRANSIENT = re.compile(r"timed? ?out|timeout|servfail|no nameservers|lifetime", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ExpectedRecords:
    """What a customer domain must publish for us (from the domain's row in the API)."""

    spf_include: str
    dkim_selector: str
    dkim_public_key: str
    return_path_host: str = ""
    return_path_target: str = ""
    dmarc_rua: str = ""
    # rua addresses published before the signed tag: still accepted for readiness, with a
    # warning to publish ``dmarc_rua`` (the MTA refuses reports sent to them).
    dmarc_rua_legacy: tuple[str, ...] = ()
    # Optional extras the API publishes: a second (ed25519) DKIM key and a tracking CNAME.
    secondary_dkim_selector: str = ""
    secondary_dkim_public_key: str = ""
    tracking_host: str = ""
    tracking_target: str = ""
    # The team's ownership token (TXT at OWNERSHIP_PREFIX.<domain>); required for
    # readiness only when ``ownership_required`` (another team has added the same name).
    ownership_token: str = ""
    ownership_required: bool = False


@dataclass(slots=True)
class RecordCheck:
    status: Status
    found: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class DomainCheckReport:
    domain: str
    checks: dict[str, RecordCheck]
    required: tuple[str, ...] = REQUIRED_FOR_SENDING

    @property
    def ready(self) -> bool:
        return all(self.checks[name].status == "pass" for name in self.required)

    @property
    def failing(self) -> list[str]:
        return [name for name in self.required if self.checks[name].status == "fail"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "ready": self.ready,
            "checks": {name: asdict(check) for name, check in self.checks.items()},
        }


class _DnsUnknown(Exception):
    """DNS could not answer (timeout, SERVFAIL): the record's status is unknown."""


def make_resolver(
    nameservers: list[str], port: int = 53, timeout: float = 2.0, lifetime: float = 4.0
) -> dns.resolver.Resolver:
    """A resolver on the given servers; an empty list means the system's resolvers."""
    resolver = dns.resolver.Resolver(configure=not nameservers)
    if nameservers:
        resolver.nameservers = list(nameservers)
        resolver.port = port
    resolver.timeout = timeout
    resolver.lifetime = lifetime
    return resolver


def _query(resolver: dns.resolver.Resolver, name: str, rdtype: str) -> list[Any]:
    """Answers (empty when the name or type does not exist); raises _DnsUnknown otherwise."""
    try:
        return list(resolver.resolve(name, rdtype, search=False))
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.resolver.NoNameservers as exc:
        raise _DnsUnknown(f"{rdtype} {name}: SERVFAIL or refused by every nameserver") from exc
    except dns.exception.Timeout as exc:
        raise _DnsUnknown(f"{rdtype} {name}: DNS timeout") from exc
    except dns.exception.DNSException as exc:
        raise _DnsUnknown(f"{rdtype} {name}: {exc}") from exc


def _txt(resolver: dns.resolver.Resolver, name: str) -> list[str]:
    return [b"".join(r.strings).decode("utf-8", "replace") for r in _query(resolver, name, "TXT")]


def _guard(check: Any) -> Any:
    def run(*args: Any) -> RecordCheck:
        try:
            return check(*args)
        except _DnsUnknown as exc:
            return RecordCheck("unknown", reasons=[str(exc)])

    return run


@_guard
def check_spf(domain: str, expected: ExpectedRecords, resolver: Any) -> RecordCheck:
    records = [t for t in _txt(resolver, domain) if t.lower().startswith("v=spf1")]
    if not records:
        return RecordCheck(
            "fail", reasons=[f"no SPF record: publish v=spf1 include:{expected.spf_include} ~all"]
        )
    if len(records) > 1:
        return RecordCheck("fail", records, ["more than one SPF record (RFC 7208 permerror)"])
    record = records[0]
    terms = record.lower().split()
    reasons = []
    if f"include:{expected.spf_include.lower()}" not in terms:
        reasons.append(f"include:{expected.spf_include} missing")
    try:
        parsed = parse_spf_record(record, domain, resolver=resolver, timeout=resolver.lifetime)
        lookups = int(parsed.get("dns_lookups", 0))
    except SPFTooManyDNSLookups as exc:
        return RecordCheck("fail", records, [*reasons, f"too many DNS lookups: {exc}"])
    except SPFError as exc:
        if _TRANSIENT.search(str(exc)):
            return RecordCheck("unknown", records, [f"SPF evaluation: {exc}"])
        return RecordCheck("fail", records, [*reasons, f"invalid SPF: {exc}"])
    details = {"dns_lookups": lookups}
    return RecordCheck("fail" if reasons else "pass", records, reasons, details)


def _dkim_tags(record: str) -> dict[str, str]:
    tags = {}
    for part in record.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            tags[key.strip().lower()] = "".join(value.split())
    return tags


@_guard
def check_dkim(domain: str, expected: ExpectedRecords, resolver: Any) -> RecordCheck:
    return _check_dkim_key(domain, expected.dkim_selector, expected.dkim_public_key, resolver)


@_guard
def check_secondary_dkim(domain: str, expected: ExpectedRecords, resolver: Any) -> RecordCheck:
    return _check_dkim_key(
        domain, expected.secondary_dkim_selector, expected.secondary_dkim_public_key, resolver
    )


def _check_dkim_key(domain: str, selector: str, public_key: str, resolver: Any) -> RecordCheck:
    name = f"{selector}._domainkey.{domain}"
    records = _txt(resolver, name)
    keys = [r for r in records if "p=" in r.replace(" ", "")]
    if not keys:
        return RecordCheck("fail", records, [f"no DKIM key published at {name}"])
    want = "".join(public_key.split())
    for record in keys:
        tags = _dkim_tags(record)
        if tags.get("p") == want:
            return RecordCheck("pass", keys)
    if any(_dkim_tags(r).get("p") == "" for r in keys):
        return RecordCheck("fail", keys, [f"DKIM key at {name} is revoked (empty p=)"])
    return RecordCheck("fail", keys, [f"DKIM key at {name} does not match ours"])


@_guard
def check_dmarc(domain: str, expected: ExpectedRecords, resolver: Any) -> RecordCheck:
    name = f"_dmarc.{domain}"
    records = [t for t in _txt(resolver, name) if t.lower().replace(" ", "").startswith("v=dmarc1")]
    if not records:
        return RecordCheck("fail", reasons=[f"no DMARC record at {name}"])
    if len(records) > 1:
        return RecordCheck("fail", records, ["more than one DMARC record"])
    try:
        parsed = parse_dmarc_record(
            records[0], domain, resolver=resolver, timeout=resolver.lifetime
        )
    except DMARCError as exc:
        if _TRANSIENT.search(str(exc)):
            return RecordCheck("unknown", records, [f"DMARC evaluation: {exc}"])
        return RecordCheck("fail", records, [f"invalid DMARC record: {exc}"])
    tags = parsed.get("tags", {})
    policy = tags.get("p", {}).get("value")
    rua = [uri.get("address", "") for uri in tags.get("rua", {}).get("value", []) or []]
    details = {"p": policy, "rua": rua, "warnings": parsed.get("warnings", [])}
    reasons = []
    if expected.dmarc_rua:
        address = expected.dmarc_rua.lower().removeprefix("mailto:")
        published = [a.lower() for a in rua]
        legacy = [a.lower().removeprefix("mailto:") for a in expected.dmarc_rua_legacy]
        if address not in published and any(old in published for old in legacy):
            details["warnings"] = [
                *details["warnings"],
                f"rua uses an old report address: publish mailto:{address} to keep "
                "receiving DMARC reports",
            ]
        elif address not in published:
            reasons.append(f"rua does not include mailto:{address}")
    return RecordCheck("fail" if reasons else "pass", records, reasons, details)


@_guard
def check_mx(domain: str, expected: ExpectedRecords, resolver: Any) -> RecordCheck:
    answers = _query(resolver, domain, "MX")
    found = [f"{r.preference} {r.exchange.to_text(omit_final_dot=True)}" for r in answers]
    if not answers:
        return RecordCheck("fail", reasons=["no MX record: replies and bounces cannot reach you"])
    if len(answers) == 1 and answers[0].exchange.to_text() == ".":
        return RecordCheck("fail", found, ["null MX (RFC 7505): the domain receives no mail"])
    return RecordCheck("pass", found)


@_guard
def check_return_path(domain: str, expected: ExpectedRecords, resolver: Any) -> RecordCheck:
    if not expected.return_path_host:
        return RecordCheck("pass", reasons=["no custom return path configured"])
    return _check_cname(expected.return_path_host, expected.return_path_target, resolver)


@_guard
def check_tracking(domain: str, expected: ExpectedRecords, resolver: Any) -> RecordCheck:
    return _check_cname(expected.tracking_host, expected.tracking_target, resolver)


def _check_cname(host: str, target: str, resolver: Any) -> RecordCheck:
    answers = _query(resolver, host, "CNAME")
    found = [r.target.to_text(omit_final_dot=True).lower() for r in answers]
    if target.lower().rstrip(".") in found:
        return RecordCheck("pass", found)
    if found:
        return RecordCheck("fail", found, [f"{host} is a CNAME to {found[0]}, not to {target}"])
    return RecordCheck("fail", found, [f"{host} must be a CNAME to {target}"])


def ownership_record(domain: str, token: str) -> tuple[str, str]:
    """(name, TXT value) proving one team's control of a domain that several teams added."""
    return f"{OWNERSHIP_PREFIX}.{domain}", f"{OWNERSHIP_TAG}{token}"


@_guard
def check_ownership(domain: str, expected: ExpectedRecords, resolver: Any) -> RecordCheck:
    name, value = ownership_record(domain, expected.ownership_token)
    found = [t for t in _txt(resolver, name) if t.strip().startswith(OWNERSHIP_TAG)]
    if value in (t.strip() for t in found):
        return RecordCheck("pass", found)
    reason = f"publish TXT {value} at {name} to prove this team controls {domain}"
    return RecordCheck("fail", found, [reason])


CHECKS = {
    "spf": check_spf,
    "dkim": check_dkim,
    "dmarc": check_dmarc,
    "mx": check_mx,
    "return_path": check_return_path,
}
# Checked only when the domain's ExpectedRecords name them (the API's domains do).
OPTIONAL_CHECKS = {
    "dkim_ed25519": (check_secondary_dkim, "secondary_dkim_selector"),
    "tracking": (check_tracking, "tracking_host"),
    "ownership": (check_ownership, "ownership_token"),
}


def check_domain(
    domain: str, expected: ExpectedRecords, resolver: dns.resolver.Resolver
) -> DomainCheckReport:
    """Run every record check; ``ready`` only when SPF, DKIM and DMARC all pass (and the
    ownership token, when ``expected.ownership_required``)."""
    domain = domain.lower().rstrip(".")
    checks = {name: check(domain, expected, resolver) for name, check in CHECKS.items()}
    for name, (check, configured_by) in OPTIONAL_CHECKS.items():
        if getattr(expected, configured_by):
            checks[name] = check(domain, expected, resolver)
    required: tuple[str, ...] = REQUIRED_FOR_SENDING
    if expected.ownership_required:
        if "ownership" not in checks:  # required without a token: it can never pass
            checks["ownership"] = RecordCheck("fail", reasons=["no ownership token on record"])
        required = (*REQUIRED_FOR_SENDING, "ownership")
    return DomainCheckReport(domain, checks, required)


def apply_readiness(redis: Any, team_id: str, report: DomainCheckReport) -> str:
    """Set or clear the team's ``RedisKeys.domain_ready``; returns
    became_ready/became_unready/unchanged. Only ``team_id``'s flag is touched: another
    team that added the same name keeps its own.

    An ``unknown`` result (DNS trouble) never clears readiness: a resolver hiccup
    must not hold every message of a healthy domain. The "check started failing"
    event and email come from deliverability.domain_alerts (transitions per record).
    """
    was_ready = bool(redis.exists(RedisKeys.domain_ready(team_id, report.domain)))
    if report.ready:
        set_ready(redis, team_id, report.domain, True)
        return "unchanged" if was_ready else "became_ready"
    if report.failing:
        set_ready(redis, team_id, report.domain, False)
        return "became_unready" if was_ready else "unchanged"
    return "unchanged"


def set_ready(redis: Any, team_id: str, domain: str, ready: bool) -> None:
    """The one writer of the MTA's ready flag of one team's domain (apply_readiness;
    removal of a domain; the demo bootstrap, which skips DNS on purpose)."""
    key = RedisKeys.domain_ready(team_id, domain)
    if ready:
        redis.set(key, "1")
    else:
        redis.delete(key)
