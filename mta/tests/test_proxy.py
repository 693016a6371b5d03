"""PROXY protocol v2: the MTA behind HAProxy sees (and limits) the real client IP, on all
three listeners of the shipped HAProxy config (587 STARTTLS, 465 implicit TLS, 25 inbound).
Who may send the header at all: test_trusted_proxies.py."""

from __future__ import annotations

import shutil
import smtplib
import socket
import ssl
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kibamail.contracts import OutboundMessage
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from local_stack.stack import ServiceSpec, Stack, free_port, tcp_open
from mta.credentials import create_smtp_credential
from testing.testnet import SinkServer

from .helpers import make_message, wait_until, with_policy, write_policy

pytestmark = pytest.mark.integration

HAPROXY_CFG = Path(__file__).resolve().parents[2] / "infra" / "haproxy" / "haproxy.cfg"


@pytest.fixture
def mta_settings(test_settings: Settings, tmp_path: Path, request: Any) -> Settings:
    """Per-IP limit 2 (the limit test); the HAProxy tests ask for more, since the fixture's
    readiness probes reach the MTA as clients from 127.0.0.1 too."""
    per_ip = getattr(request, "param", 2)
    policy = write_policy(tmp_path / "policies.toml", per_ip=per_ip)
    trusted = '["127.0.0.1"]'
    policy.write_text(
        policy.read_text() + f"\n[submission.trusted_proxies]\nsubmission = {trusted}\n"
        f"smtps = {trusted}\ninbound = {trusted}\n"
    )
    return with_policy(test_settings, policy)


def proxy_v2_header(src: str, src_port: int = 40000, dst: str = "127.0.0.1") -> bytes:
    signature = b"\r\n\r\n\x00\r\nQUIT\n"
    addresses = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", src_port, 587)
    return signature + bytes([0x21, 0x11]) + struct.pack("!H", len(addresses)) + addresses


def _greeting(port: int, header: bytes | None) -> bytes:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if header is not None:
        sock.sendall(header)
    try:
        return sock.recv(200)
    except (TimeoutError, ConnectionResetError):
        return b""
    finally:
        sock.close()


def test_proxy_v2_real_ip_is_used_for_connection_limits(running_mta: Settings) -> None:
    port = running_mta.mta.submission_port
    held = []
    for _ in range(2):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(proxy_v2_header("203.0.113.9"))
        assert sock.recv(200).startswith(b"220")
        held.append(sock)
    try:
        third = _greeting(port, proxy_v2_header("203.0.113.9"))  # 3rd from that IP
        assert third == b"421 4.7.0 Too many connections from your IP, try later\r\n"
        assert _greeting(port, proxy_v2_header("198.51.100.7")).startswith(b"220")
        missing = _greeting(port, b"EHLO no-proxy-header\r\n")
        assert missing == b"421 4.7.0 PROXY protocol header required\r\n"
    finally:
        for sock in held:
            sock.close()


@pytest.fixture
def haproxy(running_mta: Settings, test_stack: Stack, tmp_path: Path) -> Iterator[dict[str, int]]:
    """The shipped config, all three frontends, pointed at this test's MTA (one backend)."""
    binary = shutil.which("haproxy")
    if binary is None:
        pytest.skip("haproxy not installed (apt-get install haproxy)")
    mta = running_mta.mta
    public = {"submission": free_port(), "smtps": free_port(), "inbound": free_port()}
    text = HAPROXY_CFG.read_text()
    for shipped, name in (("2587", "submission"), ("2465", "smtps"), ("2525", "inbound")):
        assert f"bind 127.0.0.1:{shipped}" in text
        text = text.replace(f"bind 127.0.0.1:{shipped}", f"bind 127.0.0.1:{public[name]}")
    for shipped, backend in (("10587", mta.submission_port), ("10465", mta.smtps_port),
                             ("10025", mta.inbound_port)):  # fmt: skip
        assert f"mta1 127.0.0.1:{shipped} send-proxy-v2" in text
        text = text.replace(f"127.0.0.1:{shipped}", f"127.0.0.1:{backend}")
    # serve() in-process has no metrics server: health-check each listener itself (with a
    # PROXY v2 LOCAL header, the same port as the traffic: not counted as a client).
    text = text.replace(" check port 19101", " check")
    text = "\n".join(line for line in text.splitlines() if "mta2" not in line)
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(text + "\n")
    test_stack.start(
        ServiceSpec(
            name="haproxy",
            argv=[binary, "-db", "-f", str(cfg)],
            ports=list(public.values()),
            health=lambda: all(tcp_open(port) for port in public.values()),
            timeout_seconds=20,
        )
    )
    yield public
    test_stack.stop("haproxy")


def _submit(client: smtplib.SMTP, msg: OutboundMessage) -> str:
    """One transaction; returns the platform's message id from the DATA reply (the sink
    counts deliveries by it, not by the client's Message-ID)."""
    client.mail(msg.mail_from)
    for rcpt in msg.recipients:
        client.rcpt(rcpt)
    code, reply = client.data(msg.data)
    assert code == 250 and reply.startswith(b"2.0.0 OK queued as "), reply
    return reply.decode().rsplit(" ", 1)[-1]


@pytest.mark.parametrize("mta_settings", [50], indirect=True)
def test_submission_through_haproxy_with_proxy_v2(
    haproxy: dict[str, int], running_mta: Settings, redis_client: Any, sink: SinkServer
) -> None:
    redis_client.set(RedisKeys.domain_ready("team-lb", "sender.example"), "1")
    credential = create_smtp_credential(redis_client, "team-lb")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    msg = make_message(["lb@example.org"])
    with smtplib.SMTP("127.0.0.1", haproxy["submission"], timeout=15) as client:
        client.starttls(context=context)
        client.login(*credential)
        platform_id = _submit(client, msg)
    assert wait_until(lambda: sink.delivered_counts()[platform_id] == 1, timeout=20)


@pytest.mark.parametrize("mta_settings", [50], indirect=True)
def test_implicit_tls_through_haproxy_with_proxy_v2(
    haproxy: dict[str, int], running_mta: Settings, redis_client: Any, sink: SinkServer
) -> None:
    """465: HAProxy sends the PROXY v2 header in clear, then the client's TLS bytes."""
    redis_client.set(RedisKeys.domain_ready("team-lb465", "sender.example"), "1")
    credential = create_smtp_credential(redis_client, "team-lb465")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    msg = make_message(["lb465@example.org"], team="team-lb465")
    with smtplib.SMTP_SSL("127.0.0.1", haproxy["smtps"], timeout=15, context=context) as client:
        client.login(*credential)
        platform_id = _submit(client, msg)
    assert wait_until(lambda: sink.delivered_counts()[platform_id] == 1, timeout=20)


@pytest.mark.parametrize("mta_settings", [50], indirect=True)
def test_inbound_through_haproxy_with_proxy_v2(haproxy: dict[str, int]) -> None:
    """25: the inbound listener behind the shipped config greets, and refuses relaying."""
    with smtplib.SMTP("127.0.0.1", haproxy["inbound"], timeout=15) as client:
        assert client.ehlo("mx.example.net")[0] == 250
        assert client.mail("<>")[0] == 250
        code, _text = client.rcpt("someone@not-ours.example")
        assert code == 550
