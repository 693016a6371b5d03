"""Who sent the mail a DMARC record counts: reverse DNS, ASN/country (offline mmdb), service.

Everything is optional and offline-first: no reverse DNS without a resolver, no
ASN/country without a local GeoLite2/DB-IP ``.mmdb``. Lookups are cached because
reports repeat the same few sending IPs.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import dns.exception
import dns.resolver
import dns.reversename

# Base domains of reverse-DNS names / AS organisations -> the sending service they mean.
KNOWN_SERVICES: dict[str, str] = {
    "google.com": "Google",
    "googlemail.com": "Google",
    "amazonses.com": "Amazon SES",
    "outlook.com": "Microsoft 365",
    "protection.outlook.com": "Microsoft 365",
    "sendgrid.net": "SendGrid",
    "mailgun.org": "Mailgun",
    "mailgun.net": "Mailgun",
    "mcsv.net": "Mailchimp",
    "rsgsv.net": "Mailchimp",
    "mandrillapp.com": "Mailchimp Transactional",
    "sparkpostmail.com": "SparkPost",
    "mtasv.net": "Postmark",
    "postmarkapp.com": "Postmark",
    "zoho.com": "Zoho",
    "yahoo.com": "Yahoo",
    "hubspotemail.net": "HubSpot",
    "salesforce.com": "Salesforce",
    "exacttarget.com": "Salesforce Marketing Cloud",
    "kibamail.com": "Kibamail",
}


@dataclass(frozen=True, slots=True)
class SourceInfo:
    reverse_dns: str = ""
    asn: int = 0
    as_org: str = ""
    country: str = ""
    sending_service: str = ""


def service_for(hostname: str) -> str:
    """Longest known suffix of a hostname, e.g. a7-5.smtp-out.amazonses.com -> Amazon SES."""
    labels = hostname.lower().rstrip(".").split(".")
    for start in range(len(labels) - 1):
        service = KNOWN_SERVICES.get(".".join(labels[start:]))
        if service:
            return service
    return ""


class SourceEnricher:
    """Resolve reverse DNS (if given a resolver) and ASN/country (if given mmdb paths)."""

    def __init__(
        self,
        resolver: dns.resolver.Resolver | None = None,
        asn_db: str | None = None,
        country_db: str | None = None,  # a Country or City mmdb
    ) -> None:
        self._resolver = resolver
        self._asn = _open_mmdb(asn_db)
        self._country = _open_mmdb(country_db)
        self._country_is_city = bool(
            self._country is not None and "City" in self._country.metadata().database_type
        )
        self.lookup = lru_cache(maxsize=65536)(self._lookup)

    def _reverse_dns(self, ip: str) -> str:
        if self._resolver is None:
            return ""
        try:
            answer = self._resolver.resolve(dns.reversename.from_address(ip), "PTR")
        except (dns.exception.DNSException, ValueError):
            return ""
        return str(answer[0]).rstrip(".").lower() if len(answer) else ""

    def _lookup(self, ip: str) -> SourceInfo:
        reverse = self._reverse_dns(ip)
        asn, as_org, country = 0, "", ""
        if self._asn is not None:
            # geoip2 raises AddressNotFoundError (and ValueError for odd input): no data
            with contextlib.suppress(Exception):
                record = self._asn.asn(ip)
                asn = int(record.autonomous_system_number or 0)
                as_org = record.autonomous_system_organization or ""
        if self._country is not None:
            with contextlib.suppress(Exception):
                model = self._country.city if self._country_is_city else self._country.country
                country = model(ip).country.iso_code or ""
        service = service_for(reverse) if reverse else ""
        return SourceInfo(reverse, asn, as_org, country, service)


def _open_mmdb(path: str | None) -> Any:
    if not path:
        return None
    import geoip2.database

    return geoip2.database.Reader(path)


OFFLINE = SourceEnricher()
