"""A loopback authoritative DNS server (dnslib) for the test internet.

By default it answers MX for ANY queried domain with ``10 mx.<domain>`` and A for any
name with ``default_address`` (127.0.0.1), so every recipient domain leads to the sink.
Named domains can instead carry explicit records (TXT for SPF/DKIM/DMARC, A, AAAA, MX),
a null MX (``0 .``, RFC 7505), NXDOMAIN or SERVFAIL. Serves UDP and TCP on the same
port (TCP for truncated answers such as 2048-bit DKIM keys).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from dnslib import AAAA, MX, QTYPE, RCODE, RR, TXT, A, DNSLabel, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

_RDATA = {"A": A, "AAAA": AAAA, "MX": None, "TXT": None}


def _norm(name: str) -> str:
    return name.lower().rstrip(".")


@dataclass
class Zone:
    """Explicit answers; names are lower-case without the trailing dot."""

    records: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    null_mx: set[str] = field(default_factory=set)
    nxdomain: set[str] = field(default_factory=set)
    servfail: set[str] = field(default_factory=set)

    def add(self, name: str, rtype: str, value: str) -> None:
        self.records.setdefault(_norm(name), []).append((rtype.upper(), value))

    @classmethod
    def from_file(cls, path: Path) -> Zone:
        """JSON: {"records": {name: [[type, value], ...]}, "null_mx": [], "nxdomain": [],
        "servfail": []}."""
        raw = orjson.loads(path.read_bytes())
        zone = cls(
            null_mx={_norm(n) for n in raw.get("null_mx", [])},
            nxdomain={_norm(n) for n in raw.get("nxdomain", [])},
            servfail={_norm(n) for n in raw.get("servfail", [])},
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


class TestnetResolver(BaseResolver):
    def __init__(self, zone: Zone, default_address: str = "127.0.0.1", any_mx: bool = True):
        self.zone = zone
        self.default_address = default_address
        self.any_mx = any_mx
        self.queries = 0

    def _lookup(self, name: str, qtype: str) -> tuple[int, list[tuple[str, str]]]:
        zone = self.zone
        if name in zone.servfail:
            return RCODE.SERVFAIL, []
        if name in zone.nxdomain:
            return RCODE.NXDOMAIN, []
        if qtype == "MX" and name in zone.null_mx:
            return RCODE.NOERROR, [("MX", "0 .")]
        explicit = zone.records.get(name)
        if explicit is not None:
            matching = [r for r in explicit if r[0] == qtype or qtype == "ANY"]
            if matching or qtype not in ("A", "MX"):
                return RCODE.NOERROR, matching
        if qtype == "MX" and self.any_mx:
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
    """In-process DNS server (UDP + TCP threads) on ``host:port``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        zone: Zone | None = None,
        default_address: str = "127.0.0.1",
    ) -> None:
        if port == 0:
            from local_stack.stack import free_port

            port = free_port()
        self.host = host
        self.port = port
        self.zone = zone or Zone()
        self.resolver = TestnetResolver(self.zone, default_address)
        quiet = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
        self._servers = [
            DNSServer(self.resolver, port=port, address=host, tcp=tcp, logger=quiet)
            for tcp in (False, True)
        ]
        self._lock = threading.Lock()

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
