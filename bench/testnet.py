"""The test internet for the benchmarks: ``python -m bench.testnet --smtp-port P --dns-port Q
[--defer-share 0.03 --bounce-share 0.02]``.

Like ``kibamail testnet`` but the defer/bounce mix is decided per recipient
(``SinkConfig.by_recipient``): every run, and every retry of a deferred message, sees the
same ~3 % 4xx and ~2 % 5xx answers (the demo's mix), so runs compare.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from local_stack.stack import ServiceSpec, tcp_open
from testing.testnet import DnsServer, SinkConfig, SinkServer, Zone

DEFER_SHARE = 0.03
BOUNCE_SHARE = 0.02


def testnet_spec(
    smtp_port: int, dns_port: int, defer: float = DEFER_SHARE, bounce: float = BOUNCE_SHARE
) -> ServiceSpec:
    argv = [sys.executable, "-m", "bench.testnet", "--smtp-port", str(smtp_port)]
    argv += ["--dns-port", str(dns_port), "--defer-share", str(defer)]
    argv += ["--bounce-share", str(bounce)]
    return ServiceSpec(
        name="testnet", argv=argv, ports=[smtp_port], health=lambda: tcp_open(smtp_port)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.testnet")
    parser.add_argument("--smtp-port", type=int, required=True)
    parser.add_argument("--dns-port", type=int, required=True)
    parser.add_argument("--defer-share", type=float, default=DEFER_SHARE)
    parser.add_argument("--bounce-share", type=float, default=BOUNCE_SHARE)
    args = parser.parse_args(argv)
    config = SinkConfig(
        defer_share=args.defer_share, bounce_share=args.bounce_share, by_recipient=True
    )
    stop = threading.Event()

    def _stop(*_: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    sink = SinkServer("127.0.0.1", args.smtp_port, config).start()
    dns = DnsServer("127.0.0.1", args.dns_port, Zone()).start()
    try:
        stop.wait()
    finally:
        dns.stop()
        sink.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
