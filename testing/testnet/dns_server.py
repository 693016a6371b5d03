"""The loopback authoritative DNS server (dnslib) for every test that needs DNS.

Two modes, chosen by ``Zone.catch_all``:

* the test internet (``catch_all=True``, the default): MX for ANY queried domain is
  ``10 mx.<domain>`` and A for any name is ``default_address`` (127.0.0.1), so every
  recipient domain leads to the sink; named domains can carry explicit records instead;
* an authoritative zone (``catch_all=False``): only the zone's names exist, any other
  name is NXDOMAIN (sender-domain checks, email validation, reverse DNS).

Records: A, AAAA, MX, TXT, CNAME, PTR, given one by one (``Zone.add``/``set``/``remove``,
editable while the server runs) or as presentation-format text (``Zone.from_text``).
A name holding a CNAME answers it for the other types too. Per name: a null MX
(``0 .``, RFC 7505), NXDOMAIN, SERVFAIL, or silence (no answer at all: the client
times out). Serves UDP and TCP on the same port (TCP for truncated answers such as
2048-bit DKIM keys).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from dnslib import AAAA, CNAME, MX, PTR, QTYPE, RCODE, RR, TXT, A, DNSLabel, DNSRecord
from dnslib.dns import DNSError
from dnslib.server import BaseResolver, DNSLogger, DNSServer

_RDATA = {"A": A, "AAAA": AAAA, "CNAME": CNAME, "PTR": PTR}


def _norm(name: str) -> str:
    return name.lower().rstrip(".")


def _norm_all(names: Iterable[str]) -> set[str]:
    return {_norm(n) for n in names}


@dataclass
class Zone:
    """Explicit answers; names are lower-case without the trailing dot."""

    records: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    null_mx: set[str] = field(default_factory=set)
    nxdomain: set[str] = field(default_factory=set)
    servfail: set[str] = field(default_factory=set)
    silent: set[str] = field(default_factory=set)
    catch_all: bool = True

    def add(self, name: str, rtype: str, value: str) -> None:
        self.records.setdefault(_norm(name), []).append((rtype.upper(), value))

    def set(self, name: str, rtype: str, *values: str) -> None:
        """Replace the name's records of this type (none given: remove them; a name left
        without records no longer exists)."""
        key, rtype = _norm(name), rtype.upper()
        kept = [r for r in self.records.get(key, []) if r[0] != rtype]
        kept += [(rtype, value) for value in values]
        if kept:
            self.records[key] = kept
        else:
            self.records.pop(key, None)

    def remove(self, name: str, rtype: str) -> None:
        self.set(name, rtype)

    def values(self, name: str, rtype: str) -> list[str]:
        return [v for t, v in self.records.get(_norm(name), []) if t == rtype.upper()]

    @classmethod
    def from_text(
        cls,
        text: str,
        *,
        catch_all: bool = True,
        nxdomain: Iterable[str] = (),
        servfail: Iterable[str] = (),
        silent: Iterable[str] = (),
    ) -> Zone:
        """Presentation-format records (``name. 60 IN TXT "v=spf1 -all"``, absolute names)."""
        zone = cls(
            catch_all=catch_all,
            nxdomain=_norm_all(nxdomain),
            servfail=_norm_all(servfail),
            silent=_norm_all(silent),
        )
        for rr in RR.fromZone(text):
            rtype = QTYPE[rr.rtype]
            if rtype == "TXT":
                value = b"".join(rr.rdata.data).decode()
            elif rtype == "MX":
                value = f"{rr.rdata.preference} {rr.rdata.label}"
            else:
                value = str(rr.rdata)
            zone.add(str(rr.rname), rtype, value)
        return zone

    @classmethod
    def from_file(cls, path: Path) -> Zone:
        """JSON: {"records": {name: [[type, value], ...]}, "null_mx": [], "nxdomain": [],
        "servfail": [], "silent": [], "catch_all": true}."""
        raw = orjson.loads(path.read_bytes())
        zone = cls(
            null_mx=_norm_all(raw.get("null_mx", [])),
            nxdomain=_norm_all(raw.get("nxdomain", [])),
            servfail=_norm_all(raw.get("servfail", [])),
            silent=_norm_all(raw.get("silent", [])),
            catch_all=bool(raw.get("catch_all", True)),
        )
        for name, items in raw.get("records", {}).items():
            for rtype, value in items:
                zone.add(name, rtype, value)
        return zone


def _txt_chunks(value: str) -> TXT:
    data = value.encode()
    return TXT([data[i : i + 255] for i in range(0, len(data), 255)] or [b""])


def _rdata(rtype: str, value: str) -> Any:
    if rtype == "MX":
        pref, _, host = value.partition(" ")
        return MX(host.strip() or ".", int(pref))
    if rtype == "TXT":
        return _txt_chunks(value)
    return _RDATA[rtype](value)


class Unanswered(DNSError):
    """Raised for a silent name: dnslib's handler then sends nothing."""


class TestnetResolver(BaseResolver):
    def __init__(
        self,
        zone: Zone,
        default_address: str = "127.0.0.1",
        published: Callable[[str, str], list[tuple[str, str]] | None] | None = None,
    ):
        self.zone = zone
        self.default_address = default_address
        self.published = published  # e.g. testing.testnet.api_zone.ApiDomainRecords
        self.queries = 0

    def _lookup(self, name: str, qtype: str) -> tuple[int, list[tuple[str, str]]]:
        zone = self.zone
        if name in zone.silent:
            raise Unanswered(name)
        if name in zone.servfail:
            return RCODE.SERVFAIL, []
        if name in zone.nxdomain:
            return RCODE.NXDOMAIN, []
        if qtype == "MX" and name in zone.null_mx:
            return RCODE.NOERROR, [("MX", "0 .")]
        explicit = zone.records.get(name)
        if explicit is None and self.published is not None:
            found = self.published(name, qtype)
            if found:
                return RCODE.NOERROR, found
        if explicit is not None:
            matching = [r for r in explicit if r[0] == qtype or qtype == "ANY"]
            if not matching and qtype != "CNAME":
                matching = [r for r in explicit if r[0] == "CNAME"]
            if matching or not zone.catch_all or qtype not in ("A", "MX"):
                return RCODE.NOERROR, matching
        elif not zone.catch_all:
            return (RCODE.NOERROR if name in zone.null_mx else RCODE.NXDOMAIN), []
        if qtype == "MX":
            return RCODE.NOERROR, [("MX", f"10 mx.{name}")]
        if qtype == "A":
            return RCODE.NOERROR, [("A", self.default_address)]
        return RCODE.NOERROR, []

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        self.queries += 1
        reply = request.reply()
        qname = request.q.qname
        qtype = QTYPE[request.q.qtype]
        rcode, answers = self._lookup(_norm(str(qname)), qtype)
        reply.header.rcode = rcode
        for rtype, value in answers:
            reply.add_answer(
                RR(DNSLabel(qname), getattr(QTYPE, rtype), rdata=_rdata(rtype, value), ttl=60)
            )
        return reply


class DnsServer:
    """In-process DNS server (UDP + TCP threads) on ``host:port`` (0: a free port)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        zone: Zone | None = None,
        default_address: str = "127.0.0.1",
        published: Callable[[str, str], list[tuple[str, str]] | None] | None = None,
    ) -> None:
        if port == 0:
            from local_stack.stack import free_port

            port = free_port()
        self.host = host
        self.port = port
        self.zone = zone or Zone()
        self.resolver = TestnetResolver(self.zone, default_address, published)
        quiet = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
        self._servers = [
            DNSServer(self.resolver, port=port, address=host, tcp=tcp, logger=quiet)
            for tcp in (False, True)
        ]

    def start(self) -> DnsServer:
        for server in self._servers:
            server.start_thread()
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.stop()
            server.server.server_close()

    def __enter__(self) -> DnsServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
