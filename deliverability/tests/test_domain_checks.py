"""Domain checks against a real loopback DNS server with good, broken and failing zones."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from deliverability.domain_checks import (
    DomainCheckReport,
    ExpectedRecords,
    apply_readiness,
    check_domain,
    make_resolver,
)
from kibamail.redis_keys import RedisKeys
from testing.testnet import DnsServer, Zone

pytestmark = pytest.mark.integration

KEY = "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDwIRP/UC3SBsEmGqZ9ZJW3/DkMoGeLnQg1fWn7/zYt"
EXPECTED = ExpectedRecords(
    spf_include="spf.kibamail.test",
    dkim_selector="kb1",
    dkim_public_key=KEY,
    return_path_host="bounces.{domain}",
    return_path_target="rp.kibamail.test",
    dmarc_rua="mailto:dmarc@kibamail.test",
)
TOO_MANY = " ".join(f"include:i{n}.bd" for n in range(11))
INCLUDED = "\n".join(f'i{n}.bd. 60 IN TXT "v=spf1 ip4:198.51.100.{n} -all"' for n in range(11))
ZONE = f"""
spf.kibamail.test. 60 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
kibamail.test. 60 IN MX 10 mx.kibamail.test.
mx.kibamail.test. 60 IN A 127.0.0.1
rp.kibamail.test. 60 IN A 192.0.2.20
good.example._report._dmarc.kibamail.test. 60 IN TXT "v=DMARC1"
good.example. 60 IN TXT "v=spf1 include:spf.kibamail.test ~all"
good.example. 60 IN TXT "google-site-verification=abc"
good.example. 60 IN MX 10 mx.good.example.
mx.good.example. 60 IN A 192.0.2.10
kb1._domainkey.good.example. 60 IN TXT "v=DKIM1; k=rsa; p={KEY}"
_dmarc.good.example. 60 IN TXT "v=DMARC1; p=quarantine; rua=mailto:dmarc@kibamail.test"
bounces.good.example. 60 IN CNAME rp.kibamail.test.
bad.example. 60 IN TXT "v=spf1 {TOO_MANY} ~all"
bad.example. 60 IN MX 0 .
kb1._domainkey.bad.example. 60 IN TXT "v=DKIM1; k=rsa; p=MIGfOTHERKEY"
bounces.bad.example. 60 IN CNAME elsewhere.example.
{INCLUDED}
flaky.example. 60 IN MX 10 mx.good.example.
kb1._domainkey.flaky.example. 60 IN TXT "v=DKIM1; p={KEY}"
"""


@pytest.fixture(scope="module")
def dns_port() -> Iterator[int]:
    zone = Zone.from_text(
        ZONE, catch_all=False, servfail={"flaky.example"}, silent={"_dmarc.flaky.example"}
    )
    with DnsServer(zone=zone) as server:
        yield server.port


def _check(domain: str, port: int) -> DomainCheckReport:
    expected = dataclasses.replace(EXPECTED, return_path_host=f"bounces.{domain}")
    resolver = make_resolver(["127.0.0.1"], port=port, timeout=0.5, lifetime=1.0)
    return check_domain(domain, expected, resolver)


def test_good_domain_passes_every_check(dns_port: int) -> None:
    report = _check("good.example", dns_port)
    statuses = {name: check.status for name, check in report.checks.items()}
    assert statuses == dict.fromkeys(("spf", "dkim", "dmarc", "mx", "return_path"), "pass"), (
        report.as_dict()
    )
    assert report.ready
    assert report.checks["spf"].details["dns_lookups"] == 1
    assert report.checks["dmarc"].details["p"] == "quarantine"


def test_an_old_rua_address_stays_ready_with_a_warning_an_unknown_one_fails(
    dns_port: int,
) -> None:
    """Domains that published the report address from before the signed tag keep sending
    (a warning says what to publish); any other rua is still a failed DMARC check."""
    resolver = make_resolver(["127.0.0.1"], port=dns_port, timeout=0.5, lifetime=1.0)
    signed = dataclasses.replace(
        EXPECTED,
        return_path_host="bounces.good.example",
        dmarc_rua="mailto:dmarc+team1.x7k2@kibamail.test",
        dmarc_rua_legacy=("mailto:dmarc@kibamail.test",),
    )
    legacy = check_domain("good.example", signed, resolver).checks["dmarc"]
    assert legacy.status == "pass"
    assert any("publish mailto:dmarc+team1.x7k2@" in w for w in legacy.details["warnings"])
    strict = dataclasses.replace(signed, dmarc_rua_legacy=())
    failed = check_domain("good.example", strict, resolver).checks["dmarc"]
    assert failed.status == "fail"
    assert failed.reasons == ["rua does not include mailto:dmarc+team1.x7k2@kibamail.test"]


def test_broken_domain_fails_each_record_with_a_reason(dns_port: int) -> None:
    report = _check("bad.example", dns_port)
    checks = report.checks
    assert not report.ready
    assert checks["spf"].status == "fail"
    assert any("include:spf.kibamail.test missing" in r for r in checks["spf"].reasons)
    assert any("too many DNS lookups" in r for r in checks["spf"].reasons)
    assert checks["dkim"].status == "fail"
    assert "does not match" in checks["dkim"].reasons[0]
    assert checks["dmarc"].status == "fail"
    assert "no DMARC record" in checks["dmarc"].reasons[0]
    assert checks["mx"].status == "fail" and "null MX" in checks["mx"].reasons[0]
    assert checks["return_path"].status == "fail"
    assert checks["return_path"].found == ["elsewhere.example"]


def test_missing_domain_fails_not_crashes(dns_port: int) -> None:
    report = _check("nowhere.example", dns_port)
    assert {c.status for c in report.checks.values()} == {"fail"}


def test_servfail_and_timeout_give_unknown_never_fail(dns_port: int) -> None:
    report = _check("flaky.example", dns_port)
    checks = report.checks
    assert checks["spf"].status == "unknown"
    assert "SERVFAIL" in checks["spf"].reasons[0]
    assert checks["dmarc"].status == "unknown"
    assert "timeout" in checks["dmarc"].reasons[0].lower()
    assert checks["dkim"].status == "pass"
    assert not report.ready and report.failing == []


def test_readiness_flag_follows_checks(dns_port: int, redis_client) -> None:
    good = _check("good.example", dns_port)
    key = RedisKeys.domain_ready("team-a", "good.example")
    other = RedisKeys.domain_ready("team-b", "good.example")
    redis_client.set(other, "1")
    assert apply_readiness(redis_client, "team-a", good) == "became_ready"
    assert redis_client.get(key) in (b"1", "1")
    assert apply_readiness(redis_client, "team-a", good) == "unchanged"
    # DNS trouble keeps a ready domain ready
    flaky = _check("flaky.example", dns_port)
    flaky.domain = "good.example"
    assert apply_readiness(redis_client, "team-a", flaky) == "unchanged"
    assert redis_client.exists(key)
    # A real failure clears it
    broken = _check("bad.example", dns_port)
    broken.domain = "good.example"
    assert apply_readiness(redis_client, "team-a", broken) == "became_unready"
    assert not redis_client.exists(key)
    assert redis_client.get(other) in (b"1", "1")  # another team's flag is its own


def test_check_domain_cli(dns_port: int) -> None:
    import json
    import subprocess
    import sys

    def run(domain: str) -> subprocess.CompletedProcess[str]:
        args = [
            sys.executable, "-m", "console.cli", "dmarc", "check-domain", domain,
            "--spf-include", EXPECTED.spf_include, "--dkim-selector", EXPECTED.dkim_selector,
            "--dkim-public-key", KEY, "--dmarc-rua", EXPECTED.dmarc_rua,
            "--nameserver", "127.0.0.1", "--dns-port", str(dns_port),
        ]  # fmt: skip
        return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)

    good, bad = run("good.example"), run("bad.example")
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["ready"] is True
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["checks"]["dmarc"]["status"] == "fail"
