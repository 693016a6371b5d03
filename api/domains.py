"""Sending domains: DKIM key generation, the DNS records to publish, DNS verification.

Verification queries the records with dnspython (the resolver from settings, so tests
point it at a loopback DNS server) and keeps a status per record. SPF, DKIM (RSA) and
DMARC are required for the Redis "ready" flag the MTA reads; the return-path and
tracking CNAMEs are reported but optional.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlparse

import dns.exception
import dns.resolver
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from api.db import utcnow
from api.models import Domain
from kibamail.settings import Settings
from pipelines.contracts import RedisKeys

REQUIRED_RECORDS = ("spf", "dkim_rsa", "dmarc")


@dataclass(frozen=True)
class DnsRecord:
    key: str
    type: str
    name: str
    value: str
    required: bool


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
    )


def spf_include(settings: Settings) -> str:
    return f"_spf.{settings.mta.hostname}"


def dns_records(domain: Domain, settings: Settings) -> list[DnsRecord]:
    tracking_host = urlparse(settings.api.public_url).hostname or settings.mta.hostname
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
            f"v=DMARC1; p=none; rua=mailto:dmarc@{settings.mta.hostname}",
            True,
        ),
        DnsRecord("return_path", "CNAME", f"bounces.{domain.name}", settings.mta.hostname, False),
        DnsRecord("tracking", "CNAME", f"track.{domain.name}", tracking_host, False),
    ]


def make_resolver(settings: Settings) -> dns.resolver.Resolver:
    if not settings.mta.dns_servers:
        return dns.resolver.Resolver()
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = list(settings.mta.dns_servers)
    resolver.port = settings.mta.dns_port
    resolver.timeout = 2.0
    resolver.lifetime = 4.0
    return resolver


def _txt_values(resolver: dns.resolver.Resolver, name: str) -> list[str]:
    answer = resolver.resolve(name, "TXT")
    return [b"".join(rdata.strings).decode(errors="replace") for rdata in answer]


def _normalise(value: str) -> str:
    return " ".join(value.replace(";", "; ").split()).rstrip(";").lower()


def check_record(resolver: dns.resolver.Resolver, record: DnsRecord) -> dict[str, Any]:
    """{'status': verified|missing|mismatch|error, 'found': [...]} for one record."""
    try:
        if record.type == "CNAME":
            found = [r.target.to_text().rstrip(".") for r in resolver.resolve(record.name, "CNAME")]
            ok = any(f.lower() == record.value.lower() for f in found)
        else:
            found = _txt_values(resolver, record.name)
            if record.key == "spf":
                spf = [f for f in found if f.lower().startswith("v=spf1")]
                include = record.value.split()[1].lower()
                ok = any(include in f.lower().split() for f in spf)
            elif record.key == "dmarc":
                ok = any(f.lower().startswith("v=dmarc1") for f in found)
            else:
                ok = any(_normalise(f) == _normalise(record.value) for f in found)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return {"status": "missing", "found": []}
    except dns.exception.DNSException as exc:
        return {"status": "error", "found": [], "error": str(exc)}
    return {"status": "verified" if ok else "mismatch", "found": found}


def verify_domain(domain: Domain, settings: Settings, redis: Any) -> Domain:
    """Check every record, update the row, and set or clear the MTA's ready flag."""
    resolver = make_resolver(settings)
    statuses = {r.key: check_record(resolver, r) for r in dns_records(domain, settings)}
    domain.record_status = statuses
    domain.last_checked_at = utcnow()
    ready = all(statuses[key]["status"] == "verified" for key in REQUIRED_RECORDS)
    if ready:
        domain.verified_at = domain.verified_at or utcnow()
    domain.status = "verified" if ready else "pending"
    set_ready_flag(redis, domain, ready)
    return domain


def publish_dkim_key(redis: Any, domain: Domain) -> None:
    """The signing key the MTA reads (RSA: accepted by every receiver)."""
    redis.hset(
        RedisKeys.dkim_key(domain.name),
        mapping={
            "selector": domain.rsa_selector,
            "algorithm": "rsa-sha256",
            "private_key": domain.rsa_private_pem,
        },
    )


def set_ready_flag(redis: Any, domain: Domain, ready: bool) -> None:
    if ready:
        publish_dkim_key(redis, domain)
        redis.set(RedisKeys.domain_ready(domain.name), "1")
    else:
        redis.delete(RedisKeys.domain_ready(domain.name))


RECHECK_EVERY = timedelta(hours=1)


def recheck_due_domains(sessions: sessionmaker[Session], settings: Settings, redis: Any) -> int:
    """Re-verify domains not checked for RECHECK_EVERY (a record removed later un-readies it)."""
    cutoff = utcnow() - RECHECK_EVERY
    with sessions() as db:
        due = list(
            db.scalars(
                select(Domain.id).where(
                    or_(Domain.last_checked_at.is_(None), Domain.last_checked_at < cutoff)
                )
            )
        )
    for domain_id in due:
        with sessions.begin() as db:
            domain = db.get(Domain, domain_id)
            if domain is not None:
                verify_domain(domain, settings, redis)
    return len(due)
