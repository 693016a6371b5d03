"""The test internet: a provider-like SMTP sink and a loopback DNS server.

In-process (tests): ``SinkServer(port=..., config=SinkConfig(...)).start()`` and
``DnsServer(port=..., zone=Zone(...)).start()``, both with ``stop()``. The DNS server is
the one loopback DNS of the test suite: ``Zone(catch_all=False)`` or
``Zone.from_text(records, catch_all=False)`` makes it a plain authoritative zone (for
sender-domain checks and email validation) instead of the catch-all test internet.
As a process: ``kibamail testnet --smtp-port P --dns-port Q --record-file F`` calls
``run(...)``, which blocks until SIGTERM/SIGINT. Deliveries are counted per Message-ID
from another process by reading the JSONL record file (``read_records``).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from .dns_server import DnsServer, Zone
from .sink import SinkConfig, SinkRecord, SinkServer, message_id_of, read_records

__all__ = [
    "DnsServer",
    "SinkConfig",
    "SinkRecord",
    "SinkServer",
    "Zone",
    "message_id_of",
    "read_records",
    "run",
]


def run(
    smtp_port: int,
    dns_port: int,
    defer_share: float = 0.0,
    bounce_share: float = 0.0,
    *,
    slow_share: float = 0.0,
    disconnect_share: float = 0.0,
    slow_seconds: float = 2.0,
    record_file: Path | None = None,
    zone_file: Path | None = None,
    address: str = "127.0.0.1",
    seed: int | None = None,
    mailbox_dir: Path | None = None,
    publish_api_domains: bool = False,
) -> None:
    """Serve the sink and the DNS server until SIGTERM/SIGINT."""
    config = SinkConfig(
        defer_share=defer_share,
        bounce_share=bounce_share,
        slow_share=slow_share,
        disconnect_share=disconnect_share,
        slow_seconds=slow_seconds,
        record_file=record_file,
        seed=seed,
        mailbox_dir=mailbox_dir,
    )
    zone = Zone.from_file(zone_file) if zone_file else Zone()
    published = None
    if publish_api_domains:  # each sending domain's records (testing.testnet.api_zone)
        from kibamail.settings import get_settings
        from testing.testnet.api_zone import ApiDomainRecords

        published = ApiDomainRecords(get_settings())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sink = SinkServer(address, smtp_port, config).start()
    dns = DnsServer(address, dns_port, zone, published=published).start()
    print(f"testnet: smtp sink on {address}:{smtp_port}, dns on {address}:{dns_port}", flush=True)
    try:
        stop.wait()
    finally:
        dns.stop()
        sink.stop()
