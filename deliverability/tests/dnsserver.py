"""A small authoritative DNS server on loopback (dnslib), for domain checks and validation.

Zone data is a list of presentation-format records. Names listed in
``servfail`` answer SERVFAIL; names in ``silent`` never answer (client timeout).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from dnslib import QTYPE, RCODE, RR, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

from local_stack.stack import free_port


class ZoneResolver(BaseResolver):  # type: ignore[misc]
    def __init__(self, zone: str, servfail: set[str], silent: set[str]) -> None:
        self.records = RR.fromZone(zone)
        self.servfail = {n.lower().rstrip(".") for n in servfail}
        self.silent = {n.lower().rstrip(".") for n in silent}

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        reply = request.reply()
        qname = str(request.q.qname).lower().rstrip(".")
        qtype = QTYPE[request.q.qtype]
        if qname in self.silent:
            time.sleep(1.5)
            return reply
        if qname in self.servfail:
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        names = {str(rr.rname).lower().rstrip(".") for rr in self.records}
        for rr in self.records:
            if str(rr.rname).lower().rstrip(".") != qname:
                continue
            if QTYPE[rr.rtype] == qtype or (QTYPE[rr.rtype] == "CNAME" and qtype != "CNAME"):
                reply.add_answer(rr)
        if not reply.rr and qname not in names:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


class _QuietHandler(DNSHandler):  # type: ignore[misc]
    """A reply to a deliberately silent name may come after shutdown: drop it quietly."""

    def handle(self) -> None:
        with suppress(OSError):
            super().handle()


@contextmanager
def loopback_dns(
    zone: str, servfail: set[str] | None = None, silent: set[str] | None = None
) -> Iterator[int]:
    """Run the server on a free UDP port of 127.0.0.1; yields the port."""
    port = free_port()
    server = DNSServer(
        ZoneResolver(zone, servfail or set(), silent or set()),
        address="127.0.0.1",
        port=port,
        logger=DNSLogger(logf=lambda _message: None),
        handler=_QuietHandler,
    )
    server.start_thread()
    try:
        yield port
    finally:
        server.stop()
        server.server.server_close()
