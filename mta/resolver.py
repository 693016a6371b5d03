"""MX resolution with dnspython: cache, fallback to A/AAAA (RFC 5321 §5.1), null MX."""

from __future__ import annotations

import time
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.resolver

from kibamail.settings import MtaSettings

from .coalesce import SingleFlight


class NullMxError(Exception):
    """The domain publishes a null MX (RFC 7505): it accepts no mail. Permanent."""


class DomainNotFoundError(Exception):
    """NXDOMAIN or no address at all: permanent."""


class TemporaryDnsError(Exception):
    """SERVFAIL / timeout: try again later."""


@dataclass(frozen=True)
class MxRoute:
    domain: str
    # (preference, hostname) in preference order; implicit MX = [(0, domain)]
    hosts: tuple[tuple[int, str], ...]


def async_resolver(settings: MtaSettings, lifetime: float) -> dns.asyncresolver.Resolver:
    """The MTA's DNS resolver: the configured servers (tests, the demo's loopback DNS) or
    the system's, with a total time budget per query."""
    resolver = dns.asyncresolver.Resolver(configure=not settings.dns_servers)
    if settings.dns_servers:
        resolver.nameservers = list(settings.dns_servers)
        resolver.port = settings.dns_port
    resolver.lifetime = lifetime
    return resolver


class MxResolver:
    """Resolves recipient domains to MX hosts and hosts to addresses, with a TTL cache;
    concurrent misses of one name share one query (``SingleFlight``)."""

    def __init__(self, settings: MtaSettings, cache_seconds: float = 300.0) -> None:
        self._resolver = async_resolver(settings, lifetime=10.0)
        self._cache_seconds = cache_seconds
        self._mx: dict[str, tuple[float, MxRoute | Exception]] = {}
        self._addr: dict[str, tuple[float, list[str]]] = {}
        self._lookups = SingleFlight()

    async def mx(self, domain: str) -> MxRoute:
        domain = domain.lower().rstrip(".")
        cached = self._mx.get(domain)
        if cached and cached[0] > time.monotonic():
            if isinstance(cached[1], Exception):
                raise cached[1]
            return cached[1]
        return await self._lookups.run(("mx", domain), lambda: self._resolve_mx(domain))

    async def _resolve_mx(self, domain: str) -> MxRoute:
        try:
            route: MxRoute | Exception = await self._lookup_mx(domain)
        except (NullMxError, DomainNotFoundError) as exc:
            route = exc
        except TemporaryDnsError:
            raise
        self._mx[domain] = (time.monotonic() + self._cache_seconds, route)
        if isinstance(route, Exception):
            raise route
        return route

    async def _lookup_mx(self, domain: str) -> MxRoute:
        try:
            answer = await self._resolver.resolve(domain, "MX")
            records = sorted((r.preference, r.exchange.to_text().rstrip(".")) for r in answer)
            if len(records) == 1 and records[0][1] in ("", "."):
                raise NullMxError(f"{domain} publishes a null MX and accepts no mail")
            return MxRoute(domain, tuple(records))
        except dns.resolver.NXDOMAIN as exc:
            raise DomainNotFoundError(f"{domain}: domain does not exist (NXDOMAIN)") from exc
        except dns.resolver.NoAnswer:
            # No MX: the domain itself is the implicit MX if it has an address.
            if await self.addresses(domain):
                return MxRoute(domain, ((0, domain),))
            raise DomainNotFoundError(f"{domain}: no MX and no A/AAAA record") from None
        except (dns.resolver.NoNameservers, dns.exception.Timeout) as exc:
            raise TemporaryDnsError(f"{domain}: DNS lookup failed temporarily ({exc})") from exc

    async def addresses(self, host: str) -> list[str]:
        """A then AAAA addresses of a host ([] when none)."""
        cached = self._addr.get(host)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        return await self._lookups.run(("addresses", host), lambda: self._resolve_addresses(host))

    async def _resolve_addresses(self, host: str) -> list[str]:
        found: list[str] = []
        for rtype in ("A", "AAAA"):
            try:
                answer = await self._resolver.resolve(host, rtype)
                found.extend(r.address for r in answer)
            except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
                continue
            except (dns.resolver.NoNameservers, dns.exception.Timeout) as exc:
                if not found:
                    raise TemporaryDnsError(f"{host}: address lookup failed ({exc})") from exc
        self._addr[host] = (time.monotonic() + self._cache_seconds, found)
        return found
