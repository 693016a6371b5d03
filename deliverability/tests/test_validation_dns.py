"""Email validation verdicts from a real loopback DNS server (MX, null MX, SERVFAIL, timeout)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deliverability.domain_checks import make_resolver
from deliverability.validation import validate_address, validate_batch
from testing.testnet import DnsServer, Zone

pytestmark = pytest.mark.integration

ZONE = """
good.example. 60 IN MX 10 mx.good.example.
mx.good.example. 60 IN A 192.0.2.10
nullmx.example. 60 IN MX 0 .
aonly.example. 60 IN A 192.0.2.11
txtonly.example. 60 IN TXT "hello"
xn--bcher-kva.example. 60 IN MX 10 mx.good.example.
"""


@pytest.fixture(scope="module")
def resolver() -> Iterator[object]:
    zone = Zone.from_text(
        ZONE, catch_all=False, servfail={"broken.example"}, silent={"slow.example"}
    )
    with DnsServer(zone=zone) as server:
        yield make_resolver(["127.0.0.1"], port=server.port, timeout=0.4, lifetime=0.8)


@pytest.mark.parametrize(
    ("address", "verdict", "reason"),
    [
        ("jane@good.example", "valid", None),
        ("jane@nullmx.example", "invalid", "null MX"),
        ("jane@missing.example", "invalid", "does not exist"),
        ("jane@aonly.example", "valid", None),
        ("jane@txtonly.example", "invalid", "no MX, A or AAAA"),
        ("jane@broken.example", "unknown", "SERVFAIL"),
        ("jane@slow.example", "unknown", "timeout"),
        ("info@good.example", "risky", "role account"),
        ("x@bücher.example", "valid", None),
    ],
)
def test_dns_verdicts(resolver: object, address: str, verdict: str, reason: str | None) -> None:
    result = validate_address(address, resolver)  # type: ignore[arg-type]
    assert result.result == verdict, result.as_dict()
    if reason:
        assert any(reason in r for r in result.reasons), result.reasons


def test_batch_resolves_each_domain_once(resolver: object) -> None:
    results = validate_batch(["a@good.example", "b@good.example", "bad"], resolver)  # type: ignore[arg-type]
    assert [r.result for r in results] == ["valid", "valid", "invalid"]
