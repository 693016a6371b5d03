"""A tiny authoritative DNS server on loopback (dnslib) whose zone tests can edit."""

from __future__ import annotations

from typing import Any

from dnslib import CNAME, QTYPE, RR, TXT, DNSRecord
from dnslib.server import BaseResolver, DNSServer


class ZoneResolver(BaseResolver):  # type: ignore[misc]
    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}

    def add(self, name: str, rtype: str, value: str) -> None:
        self.records.setdefault((name.rstrip(".").lower(), rtype), []).append(value)

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        for value in self.records.get((qname, qtype), []):
            rdata = (
                TXT([value[i : i + 255] for i in range(0, len(value), 255)])
                if qtype == "TXT"
                else CNAME(value)
            )
            reply.add_answer(RR(request.q.qname, request.q.qtype, rdata=rdata, ttl=60))
        if not reply.rr and not any(name == qname for name, _ in self.records):
            reply.header.rcode = 3  # NXDOMAIN
        return reply


def start_dns(port: int) -> tuple[ZoneResolver, DNSServer]:
    resolver = ZoneResolver()
    server = DNSServer(resolver, port=port, address="127.0.0.1")
    server.start_thread()
    return resolver, server
