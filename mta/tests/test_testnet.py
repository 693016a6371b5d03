"""The test internet over real loopback sockets: sink answers and DNS records."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.resolver
import pytest

from testing.testnet import DnsServer, SinkConfig, SinkServer, Zone, read_records

pytestmark = pytest.mark.integration


def _message(message_id: str) -> bytes:
    return (
        f"From: a@sender.example\r\nTo: b@example.org\r\nMessage-ID: <{message_id}>\r\n"
        "Subject: hi\r\n\r\nbody\r\n"
    ).encode()


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SinkServer]:
    server = SinkServer(config=SinkConfig(seed=1, record_file=tmp_path / "sink.jsonl")).start()
    yield server
    server.stop()


def test_sink_accepts_and_records_message_id(sink: SinkServer, tmp_path: Path) -> None:
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as client:
        client.sendmail("a@sender.example", ["b@example.org", "c@gmail.com"], _message("m1@x"))
    assert sink.delivered_counts() == {"m1@x": 2}
    from_file = read_records(tmp_path / "sink.jsonl")
    assert {(r.message_id, r.rcpt, r.answer_code) for r in from_file} == {
        ("m1@x", "b@example.org", 250),
        ("m1@x", "c@gmail.com", 250),
    }


def test_tempfail_and_permfail_local_parts_answer_like_the_provider(sink: SinkServer) -> None:
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as client:
        client.ehlo()
        client.mail("a@sender.example")
        code, text = client.rcpt("tempfail@gmail.com")
        assert code == 450 and b"4.2.1" in text
        code, text = client.rcpt("permfail@gmail.com")
        assert code == 550 and b"5.1.1" in text and b"does not exist" in text
        code, text = client.rcpt("permfail@outlook.com")
        assert code == 550 and b"mailbox unavailable" in text


def test_disconnect_mid_data_drops_connection_without_answer(sink: SinkServer) -> None:
    with (
        pytest.raises(smtplib.SMTPServerDisconnected),
        smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as client,
    ):
        client.sendmail("a@x.example", ["disconnect@example.org"], _message("m2@x"))
    assert [r.answer_code for r in sink.records if r.message_id == "m2@x"] == [0]
    assert sink.delivered_counts()["m2@x"] == 0


def test_shares_give_provider_4xx_and_5xx() -> None:
    with (
        SinkServer(config=SinkConfig(defer_share=1.0, seed=3)) as deferring,
        smtplib.SMTP("127.0.0.1", deferring.port, timeout=10) as client,
        pytest.raises(smtplib.SMTPDataError) as info,
    ):
        client.sendmail("a@x.example", ["u@yahoo.com"], _message("m3@x"))
    assert 400 <= info.value.smtp_code < 500
    with (
        SinkServer(config=SinkConfig(bounce_share=1.0, seed=3)) as bouncing,
        smtplib.SMTP("127.0.0.1", bouncing.port, timeout=10) as client,
        pytest.raises(smtplib.SMTPDataError) as info,
    ):
        client.sendmail("a@x.example", ["u@gmail.com"], _message("m4@x"))
    assert info.value.smtp_code >= 500 and b"gsmtp" in info.value.smtp_error


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    zone = Zone(null_mx={"nullmx.example"}, nxdomain={"gone.example"}, servfail={"broken.example"})
    zone.add("sender.example", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    zone.add("sel._domainkey.sender.example", "TXT", "v=DKIM1; k=rsa; p=" + "A" * 600)
    zone.add("v6only.example", "AAAA", "::1")
    server = DnsServer(zone=zone).start()
    yield server
    server.stop()


def _resolver(server: DnsServer) -> dns.resolver.Resolver:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = server.port
    resolver.lifetime = 3
    return resolver


def test_dns_any_domain_has_mx_pointing_at_loopback(dns_server: DnsServer) -> None:
    resolver = _resolver(dns_server)
    mx = resolver.resolve("whatever.example", "MX")
    assert [(r.preference, r.exchange.to_text()) for r in mx] == [(10, "mx.whatever.example.")]
    assert [r.address for r in resolver.resolve("mx.whatever.example", "A")] == ["127.0.0.1"]


def test_dns_zone_records_null_mx_nxdomain_servfail(dns_server: DnsServer) -> None:
    resolver = _resolver(dns_server)
    spf = resolver.resolve("sender.example", "TXT")
    assert b"".join(spf[0].strings) == b"v=spf1 ip4:127.0.0.1 -all"
    long_txt = resolver.resolve("sel._domainkey.sender.example", "TXT")  # > 512 bytes: TCP
    assert b"".join(long_txt[0].strings).endswith(b"A" * 600)
    null = resolver.resolve("nullmx.example", "MX")
    assert [(r.preference, r.exchange.to_text()) for r in null] == [(0, ".")]
    assert [r.address for r in resolver.resolve("v6only.example", "AAAA")] == ["::1"]
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver.resolve("gone.example", "MX")
    with pytest.raises((dns.resolver.NoNameservers, dns.exception.Timeout)):
        resolver.resolve("broken.example", "MX")


def test_testnet_process_records_deliveries_for_other_processes(tmp_path: Path) -> None:
    from local_stack.stack import ServiceSpec, Stack, free_port, python_cmd, tcp_open

    smtp_port, dns_port = free_port(), free_port()
    record = tmp_path / "deliveries.jsonl"
    zone = tmp_path / "zone.json"
    zone.write_text(
        '{"records": {"sender.example": [["TXT", "v=spf1 -all"]]}, "null_mx": ["n.example"]}'
    )
    stack = Stack(tmp_path / "stack")
    argv = python_cmd(
        "testnet",
        "--smtp-port",
        str(smtp_port),
        "--dns-port",
        str(dns_port),
        "--defer-share",
        "0",
        "--bounce-share",
        "0",
        "--record-file",
        str(record),
        "--zone-file",
        str(zone),
    )
    stack.start(ServiceSpec("testnet", argv, lambda: tcp_open(smtp_port), [smtp_port]))
    try:
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as client:
            client.sendmail("a@sender.example", ["b@example.org"], _message("proc-1@x"))
        assert [(r.message_id, r.answer_code) for r in read_records(record)] == [("proc-1@x", 250)]
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers, resolver.port, resolver.lifetime = ["127.0.0.1"], dns_port, 3
        assert b"".join(resolver.resolve("sender.example", "TXT")[0].strings) == b"v=spf1 -all"
        assert resolver.resolve("n.example", "MX")[0].preference == 0
    finally:
        stack.stop("testnet")
