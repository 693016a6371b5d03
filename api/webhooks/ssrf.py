"""SSRF filter for customer webhook URLs.

A customer chooses the URL our servers POST to, so without a filter they could make us
call our own Redis, the cloud metadata service or anything on the private network. The
URL is checked when it is registered (422 with the reason) and again before every
delivery, because DNS can answer differently later (rebinding). The delivery connects
to the exact address that passed the check (the Host header and TLS SNI keep the name),
so a second, different DNS answer can never be used.

Refused: schemes other than https (http only when ``webhook_allow_http``), userinfo,
IP literals in non-canonical spellings (decimal, octal, hex, shortened: ``2130706433``,
``0177.0.0.1``, ``0x7f.1``, ``127.1``), IPv6 zone ids, and any host resolving - to even
one address - in a non-global range: private, loopback, link-local (metadata
169.254.169.254), shared/CGNAT (Alibaba metadata 100.100.100.200), multicast, reserved,
unspecified, documentation, and the same ranges embedded in IPv6 (IPv4-mapped, 6to4,
Teredo, NAT64). ``webhook_allow_private`` lifts the address check (tests, self-hosting).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from kibamail.settings import Settings

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

# Metadata endpoints that are not caught by range checks on every platform.
_METADATA_ADDRESSES = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("169.254.170.2"),
    ipaddress.ip_address("100.100.100.200"),
    ipaddress.ip_address("fd00:ec2::254"),
}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_DEFAULT_PORTS = {"https": 443, "http": 80}


class UnsafeWebhookUrl(ValueError):
    """A webhook URL we refuse to call; the message says why (shown to the customer)."""


@dataclass(frozen=True)
class PinnedTarget:
    """Where to connect (``connect_url`` has the checked IP) and what to call it."""

    url: str
    connect_url: str
    host_header: str
    sni_hostname: str | None


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeWebhookUrl(f"host {host!r} does not resolve: {exc}") from exc
    return [str(info[4][0]) for info in infos]


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def blocked_reason(address: IpAddress) -> str | None:
    """Why an address must not be called, or None when it is a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = blocked_reason(embedded)
            return f"{inner} (embedded in {address})" if inner else None
    if address in _METADATA_ADDRESSES:
        return f"{address} (cloud metadata address)"
    for flag in ("unspecified", "loopback", "link_local", "multicast", "reserved", "private"):
        if getattr(address, f"is_{flag}"):
            return f"{address} ({flag.replace('_', '-')} address)"
    if not address.is_global:
        return f"{address} (not a public address)"
    return None


def _literal_address(host: str) -> IpAddress | None:
    """The IP a literal host means; refuses spellings that only some parsers read as IPs."""
    if host.startswith("["):
        if not host.endswith("]") or "%" in host:
            raise UnsafeWebhookUrl("malformed IPv6 literal or zone id in host")
        try:
            return ipaddress.IPv6Address(host[1:-1])
        except ValueError as exc:
            raise UnsafeWebhookUrl(f"invalid IPv6 literal {host!r}") from exc
    try:
        return ipaddress.IPv4Address(host)
    except ValueError:
        pass
    try:
        socket.inet_aton(host)
    except OSError:
        pass
    else:  # inet_aton reads 2130706433, 0177.0.0.1, 0x7f.1, 127.1 as addresses
        raise UnsafeWebhookUrl(f"ambiguous IP address spelling {host!r}; use dotted decimal")
    labels = host.rstrip(".").split(".")
    if labels and labels[-1].isdigit():
        raise UnsafeWebhookUrl(f"host {host!r} looks like a malformed IP address")
    return None


@dataclass(frozen=True)
class WebhookUrlGuard:
    allow_http: bool = False
    allow_private: bool = False
    resolver: Resolver = system_resolver

    def check(self, url: str) -> PinnedTarget:
        """Validate and resolve ``url``; raises UnsafeWebhookUrl with the reason."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise UnsafeWebhookUrl(f"invalid URL: {exc}") from exc
        scheme = parts.scheme.lower()
        if scheme != "https" and not (scheme == "http" and self.allow_http):
            raise UnsafeWebhookUrl("webhook URLs must use https")
        netloc = parts.netloc
        if "@" in netloc or "\\" in url:
            raise UnsafeWebhookUrl("credentials or backslashes in the URL are not allowed")
        host_part = netloc.rsplit(":", 1)[0] if port is not None else netloc.rstrip(":")
        host = host_part.lower()
        if not host or any(c.isspace() for c in host):
            raise UnsafeWebhookUrl("the URL has no host")
        port = port or _DEFAULT_PORTS[scheme]
        literal = _literal_address(host)
        addresses = (
            [literal]
            if literal is not None
            else [ipaddress.ip_address(a.split("%", 1)[0]) for a in self.resolver(host, port)]
        )
        if not addresses:
            raise UnsafeWebhookUrl(f"host {host!r} does not resolve")
        if not self.allow_private:
            for address in addresses:  # every answer: a round-robin must not sneak one in
                reason = blocked_reason(address)
                if reason is not None:
                    raise UnsafeWebhookUrl(f"host {host!r} resolves to a refused address: {reason}")
        pinned = addresses[0]
        pinned_host = f"[{pinned}]" if pinned.version == 6 else str(pinned)
        connect_netloc = f"{pinned_host}:{port}"
        connect_url = parts._replace(netloc=connect_netloc).geturl()
        default_port = port == _DEFAULT_PORTS[scheme]
        return PinnedTarget(
            url=url,
            connect_url=connect_url,
            host_header=host_part if default_port else f"{host_part}:{port}",
            sni_hostname=host if scheme == "https" and literal is None else None,
        )


def guard_from_settings(
    settings: Settings, resolver: Resolver = system_resolver
) -> WebhookUrlGuard:
    return WebhookUrlGuard(
        allow_http=settings.api.webhook_allow_http,
        allow_private=settings.api.webhook_allow_private,
        resolver=resolver,
    )
