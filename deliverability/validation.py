"""Email address validation: syntax, domain accepts mail, disposable, role, typo suggestions.

Verdicts: ``invalid`` (cannot receive mail: bad syntax, no such domain, null MX),
``risky`` (deliverable but disposable or a role account), ``unknown`` (DNS could
not answer: never guessed as invalid) and ``valid``. Every verdict lists reasons.
Syntax (RFC 5321/5322, RFC 6531 internationalized) is email-validator's; the
disposable list is the maintained ``disposable-email-domains`` package.
"""

from __future__ import annotations

import importlib
import importlib.util
import time
import unicodedata
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import dns.exception
import dns.resolver
import email_validator
from email_validator import EmailSyntaxError, ValidatedEmail
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES
from email_validator.syntax import (
    split_email,
    validate_email_domain_name,
    validate_email_length,
    validate_email_local_part,
)

Verdict = Literal["valid", "invalid", "risky", "unknown"]

ROLE_ACCOUNTS = frozenset(
    [
        "abuse",
        "accounting",
        "accounts",
        "admin",
        "administrator",
        "billing",
        "careers",
        "contact",
        "customerservice",
        "devnull",
        "dmarc",
        "enquiries",
        "feedback",
        "finance",
        "help",
        "hello",
        "helpdesk",
        "hostmaster",
        "hr",
        "info",
        "inquiries",
        "it",
        "jobs",
        "legal",
        "mail",
        "mailer-daemon",
        "marketing",
        "media",
        "news",
        "newsletter",
        "no-reply",
        "noc",
        "noreply",
        "nobody",
        "office",
        "orders",
        "postmaster",
        "press",
        "privacy",
        "root",
        "sales",
        "security",
        "service",
        "spam",
        "support",
        "team",
        "tech",
        "webmaster",
    ]
)

COMMON_PROVIDERS = (
    "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "yahoo.fr", "hotmail.com",
    "hotmail.co.uk", "hotmail.fr", "outlook.com", "live.com", "msn.com", "icloud.com", "me.com",
    "mac.com", "aol.com", "proton.me", "protonmail.com", "gmx.com", "gmx.de", "gmx.net",
    "web.de", "yandex.ru", "mail.ru", "zoho.com", "comcast.net", "verizon.net", "att.net",
    "orange.fr", "free.fr", "t-online.de", "libero.it", "qq.com", "163.com", "fastmail.com",
)  # fmt: skip
_PROVIDER_SET = frozenset(COMMON_PROVIDERS)


class DisposableDomains:
    """The package's list plus an optional operator file. ``refresh()`` reloads both; a
    long-running process also reloads by itself, at most every ``check_every`` seconds,
    when the package was upgraded or the operator file edited (their mtimes changed)."""

    def __init__(self, extra_file: str | Path | None = None, check_every: float = 300.0) -> None:
        self.extra_file = Path(extra_file) if extra_file else None
        self.check_every = check_every
        self.domains: frozenset[str] = frozenset()
        self._stamp: tuple[int, ...] = ()
        self._next_check = time.monotonic() + check_every
        self.refresh()

    def _sources_stamp(self) -> tuple[int, ...]:
        spec = importlib.util.find_spec("disposable_email_domains")
        sources = [Path(spec.origin) if spec and spec.origin else None, self.extra_file]
        return tuple(f.stat().st_mtime_ns if f and f.exists() else 0 for f in sources)

    def refresh(self) -> int:
        """Reload (after `uv sync -U disposable-email-domains` or editing the extra file)."""
        self._stamp = self._sources_stamp()
        module = importlib.reload(importlib.import_module("disposable_email_domains"))
        domains = {d.lower() for d in module.blocklist}
        if self.extra_file and self.extra_file.exists():
            for line in self.extra_file.read_text().splitlines():
                line = line.strip().lower()
                if line and not line.startswith("#"):
                    domains.add(line)
        self.domains = frozenset(domains)
        return len(self.domains)

    def refresh_if_changed(self) -> bool:
        if self._sources_stamp() == self._stamp:
            return False
        self.refresh()
        return True

    def __contains__(self, domain: str) -> bool:
        if time.monotonic() >= self._next_check:
            self._next_check = time.monotonic() + self.check_every
            self.refresh_if_changed()
        labels = domain.lower().split(".")
        return any(".".join(labels[i:]) in self.domains for i in range(len(labels) - 1))


DISPOSABLE = DisposableDomains()


@dataclass(slots=True)
class ValidationResult:
    email: str
    result: Verdict
    normalized: str | None = None
    reasons: list[str] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)
    suggestion: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _distance(a: str, b: str, limit: int = 2) -> int:
    """Optimal-string-alignment distance (transpositions count 1), early exit past limit."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = ca != cb
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[-1]


@lru_cache(maxsize=65536)
def suggest_domain(domain: str) -> str | None:
    """The common provider a domain is probably a typo of (gmial.com -> gmail.com)."""
    domain = domain.lower()
    if domain in _PROVIDER_SET:
        return None
    best, best_distance = None, 3
    for provider in COMMON_PROVIDERS:
        distance = _distance(domain, provider)
        if distance < best_distance:
            best, best_distance = provider, distance
    return best if best_distance <= 2 else None


@lru_cache(maxsize=65536)
def _domain_syntax(domain_part: str) -> tuple[str, str] | str:
    """(domain, ascii_domain) or the syntax error: contact lists repeat a few domains."""
    try:
        info = validate_email_domain_name(domain_part)
    except EmailSyntaxError as exc:
        return str(exc)
    return info["domain"], info["ascii_domain"]


def parse_syntax(address: str) -> ValidatedEmail:
    """email-validator's own steps (split, local part, domain, lengths) with the domain
    step cached per domain; same rules as ``validate_email(check_deliverability=False)``
    (no display name, no quoted local part, no domain literal)."""
    display_name, _original, local, quoted, domain_part = split_email(address)
    if display_name is not None:
        raise EmailSyntaxError("A display name and angle brackets are not permitted here.")
    if quoted:
        raise EmailSyntaxError("Quoting the part before the @-sign is not allowed here.")
    if not domain_part:
        raise EmailSyntaxError("There must be something after the @-sign.")
    if domain_part.startswith("["):
        raise EmailSyntaxError("A bracketed IP address after the @-sign is not allowed here.")
    local_info = validate_email_local_part(unicodedata.normalize("NFC", local))
    domain = _domain_syntax(domain_part)
    if isinstance(domain, str):
        raise EmailSyntaxError(domain)
    parsed = ValidatedEmail()
    parsed.original = address
    parsed.local_part = local_info["local_part"]
    parsed.ascii_local_part = local_info["ascii_local_part"]
    parsed.smtputf8 = local_info["smtputf8"]
    if (
        parsed.ascii_local_part
        and parsed.ascii_local_part.lower() in CASE_INSENSITIVE_MAILBOX_NAMES
    ):
        parsed.local_part = parsed.ascii_local_part = parsed.ascii_local_part.lower()
    parsed.domain, parsed.ascii_domain = domain
    parsed.normalized = f"{parsed.local_part}@{parsed.domain}"
    parsed.ascii_email = (
        f"{parsed.ascii_local_part}@{parsed.ascii_domain}" if parsed.ascii_local_part else None
    )
    validate_email_length(parsed)
    return parsed


def check_syntax_and_lists(address: str) -> ValidationResult:
    """Everything that needs no network: syntax, role, disposable, typo suggestion."""
    result = ValidationResult(email=address, result="valid")
    try:
        parsed = parse_syntax(address)
    except email_validator.EmailNotValidError as exc:
        result.result = "invalid"
        result.reasons.append(f"syntax: {exc}")
        result.checks["syntax"] = False
        at = address.rpartition("@")[2]
        result.suggestion = _suggested_address(address, at) if at else None
        return result
    result.normalized = parsed.normalized
    result.checks["syntax"] = True
    result.checks["smtputf8"] = bool(parsed.smtputf8)
    local = parsed.local_part.lower().split("+", 1)[0]
    domain = parsed.ascii_domain
    result.checks["role"] = local in ROLE_ACCOUNTS
    result.checks["disposable"] = domain in DISPOSABLE
    if result.checks["role"]:
        result.result = "risky"
        result.reasons.append(f"role account ({local}@): often a shared inbox or list")
    if result.checks["disposable"]:
        result.result = "risky"
        result.reasons.append(f"disposable email domain ({domain})")
    result.suggestion = _suggested_address(parsed.normalized, parsed.domain)
    if result.suggestion:
        result.reasons.append(f"possible typo: did you mean {result.suggestion}?")
    return result


def _suggested_address(address: str, domain: str) -> str | None:
    better = suggest_domain(domain)
    return f"{address.rpartition('@')[0]}@{better}" if better else None


def check_mail_domain(domain: str, resolver: dns.resolver.Resolver) -> tuple[str, str]:
    """("ok"|"invalid"|"unknown", reason) for whether ``domain`` accepts mail."""
    try:
        answers = list(resolver.resolve(domain, "MX", search=False))
    except dns.resolver.NXDOMAIN:
        return "invalid", f"domain {domain} does not exist"
    except dns.resolver.NoAnswer:
        answers = []
    except dns.resolver.NoNameservers:
        return "unknown", f"DNS SERVFAIL for {domain}: could not check"
    except dns.exception.Timeout:
        return "unknown", f"DNS timeout for {domain}: could not check"
    except dns.exception.DNSException as exc:
        return "unknown", f"DNS error for {domain}: {exc}"
    if answers:
        if len(answers) == 1 and answers[0].exchange.to_text() == ".":
            return "invalid", f"domain {domain} accepts no mail (null MX, RFC 7505)"
        return "ok", f"{len(answers)} MX record(s)"
    for rdtype in ("A", "AAAA"):
        try:
            if list(resolver.resolve(domain, rdtype, search=False)):
                return "ok", f"no MX; mail goes to the domain's {rdtype} record (implicit MX)"
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            continue
        except dns.exception.DNSException as exc:
            return "unknown", f"DNS error for {domain} {rdtype}: {exc}"
    return "invalid", f"domain {domain} has no MX, A or AAAA record"


def validate_address(
    address: str,
    resolver: dns.resolver.Resolver | None = None,
    domain_cache: dict[str, tuple[str, str]] | None = None,
) -> ValidationResult:
    """Full validation; without a resolver only the offline checks run."""
    result = check_syntax_and_lists(address)
    if result.result == "invalid" or resolver is None or result.normalized is None:
        return result
    domain = result.normalized.rpartition("@")[2]
    ascii_domain = domain.encode("idna").decode() if not domain.isascii() else domain
    cache = domain_cache if domain_cache is not None else {}
    if ascii_domain not in cache:
        cache[ascii_domain] = check_mail_domain(ascii_domain, resolver)
    status, reason = cache[ascii_domain]
    result.checks["accepts_mail"] = {"ok": True, "invalid": False}.get(status)
    if status == "invalid":
        result.result = "invalid"
        result.reasons.insert(0, reason)
    elif status == "unknown":
        if result.result == "valid":
            result.result = "unknown"
        result.reasons.insert(0, reason)
    return result


def validate_batch(
    addresses: list[str], resolver: dns.resolver.Resolver | None = None
) -> list[ValidationResult]:
    """Validate many (contact import); each domain is resolved once."""
    cache: dict[str, tuple[str, str]] = {}
    return [validate_address(a, resolver, cache) for a in addresses]
