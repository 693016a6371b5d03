"""Geo, user agent and machine-open/click detection for tracking events.

Machine opens and clicks inflate engagement: Apple Mail Privacy Protection prefetches
every image from Apple's network, Gmail and Yahoo fetch images through their proxies,
and security scanners follow every link seconds after delivery. Flagging them (with the
reason) lets reports count humans while still storing every event.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

# Apple's own network; MPP prefetches come from here (and from Apple's relay egress).
APPLE_NETWORKS = (ipaddress.ip_network("17.0.0.0/8"),)
PROXY_MARKERS = {
    "GoogleImageProxy": "gmail_image_proxy",
    "ggpht.com": "gmail_image_proxy",
    "YahooMailProxy": "yahoo_image_proxy",
}
SCANNER_MARKERS = (
    "barracuda",
    "proofpoint",
    "mimecast",
    "symantec",
    "trendmicro",
    "trend micro",
    "cisco",
    "fortinet",
    "sophos",
    "bingpreview",
    "python-requests",
    "curl/",
    "go-http-client",
    "headlesschrome",
    "wget/",
    "safelinks",
    "urldefense",
)


@dataclass(frozen=True)
class UserAgentInfo:
    client: str = ""
    os: str = ""
    device: str = ""


@lru_cache(maxsize=20_000)
def parse_user_agent(user_agent: str) -> UserAgentInfo:
    """ua-parser is slow per distinct string; real traffic repeats a few thousand strings."""
    if not user_agent:
        return UserAgentInfo()
    from ua_parser import parse

    result = parse(user_agent)
    client = result.user_agent.family if result.user_agent else ""
    os_family = result.os.family if result.os else ""
    device = result.device.family if result.device else ""
    return UserAgentInfo(
        client="" if client == "Other" else client,
        os="" if os_family == "Other" else os_family,
        device="" if device == "Other" else device,
    )


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def machine_reason(ip: str, user_agent: str) -> str:
    """Why an open/click was made by a machine, or "" for a (presumed) human."""
    for marker, reason in PROXY_MARKERS.items():
        if marker in user_agent:
            return reason
    lowered = user_agent.lower()
    if any(marker in lowered for marker in SCANNER_MARKERS):
        return "security_scanner"
    address = _ip(ip)
    from_apple = address is not None and any(address in net for net in APPLE_NETWORKS)
    # MPP fetches with a bare, detail-free user agent.
    if from_apple or user_agent.strip() == "Mozilla/5.0":
        return "apple_mpp"
    return ""


@dataclass(frozen=True)
class GeoInfo:
    country: str = ""
    city: str = ""
    latitude: float | None = None
    longitude: float | None = None


class GeoLookup:
    """geoip2 on an mmdb (City or Country); no database configured -> empty geo."""

    def __init__(self, database: Path | None) -> None:
        self._path = database
        self._reader: Any = None
        self._city = False
        self.lookup = lru_cache(maxsize=100_000)(self._lookup)

    def _open(self) -> Any:
        if self._reader is None and self._path is not None:
            import geoip2.database

            self._reader = geoip2.database.Reader(str(self._path))
            self._city = "City" in self._reader.metadata().database_type
        return self._reader

    def _lookup(self, ip: str) -> GeoInfo:
        reader = self._open()
        if reader is None or _ip(ip) is None:
            return GeoInfo()
        import geoip2.errors

        try:
            if self._city:
                city = reader.city(ip)
                return GeoInfo(
                    country=city.country.iso_code or "",
                    city=city.city.name or "",
                    latitude=city.location.latitude,
                    longitude=city.location.longitude,
                )
            return GeoInfo(country=reader.country(ip).country.iso_code or "")
        except (geoip2.errors.AddressNotFoundError, ValueError):
            return GeoInfo()
