"""PROXY protocol v2: the MTA behind HAProxy sees (and limits) the real client IP."""

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

from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from local_stack.stack import ServiceSpec, Stack, free_port, tcp_open
from mta.credentials import create_smtp_credential
from testing.testnet import SinkServer

from .helpers import make_message, wait_until, with_policy, write_policy

pytestmark = pytest.mark.integration

HAPROXY_CFG = Path(__file__).resolve().parents[2] / "infra" / "haproxy" / "haproxy.cfg"


@pytest.fixture
def mta_settings(test_settings: Settings, tmp_path: Path) -> Settings:
    policy = write_policy(tmp_path / "policies.toml", per_ip=2)
    policy.write_text(
        policy.read_text().replace("[submission]\n", "[submission]\nproxy_protocol = true\n")
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
        assert _greeting(port, proxy_v2_header("203.0.113.9")) == b""  # 3rd from that IP
        assert _greeting(port, proxy_v2_header("198.51.100.7")).startswith(b"220")
        assert _greeting(port, b"EHLO no-proxy-header\r\n") == b""
    finally:
        for sock in held:
            sock.close()


@pytest.fixture
def haproxy(running_mta: Settings, test_stack: Stack, tmp_path: Path) -> Iterator[int]:
    binary = shutil.which("haproxy")
    if binary is None:
        pytest.skip("haproxy not installed (apt-get install haproxy)")
    mta = running_mta.mta
    public = free_port()
    # The shipped config, pointed at this test's MTA (one backend) and a free public port.
    text = HAPROXY_CFG.read_text()
    text = text.replace("bind 127.0.0.1:2587", f"bind 127.0.0.1:{public}")
    text = text.replace("127.0.0.1:10587", f"127.0.0.1:{mta.submission_port}")
    # serve() in-process has no metrics server: health-check the listener itself.
    text = text.replace("check port 19101", f"check port {mta.submission_port}")
    text = "\n".join(
        line
        for line in text.splitlines()
        if "mta2" not in line
        and ":2465" not in line
        and ":2525" not in line
        and "backend mta_smtps" not in line
        and "backend mta_inbound" not in line
        and "frontend smtp_smtps" not in line
        and "frontend smtp_inbound" not in line
        and "mta1 127.0.0.1:10465" not in line
        and "mta1 127.0.0.1:10025" not in line
    )
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(text + "\n")
    test_stack.start(
        ServiceSpec(
            name="haproxy",
            argv=[binary, "-db", "-f", str(cfg)],
            ports=[public],
            health=lambda: tcp_open(public),
            timeout_seconds=20,
        )
    )
    yield public
    test_stack.stop("haproxy")


def test_submission_through_haproxy_with_proxy_v2(
    haproxy: int, running_mta: Settings, redis_client: Any, sink: SinkServer
) -> None:
    redis_client.set(RedisKeys.domain_ready("team-lb", "sender.example"), "1")
    credential = create_smtp_credential(redis_client, "team-lb")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    msg = make_message(["lb@example.org"])
    with smtplib.SMTP("127.0.0.1", haproxy, timeout=15) as client:
        client.starttls(context=context)
        client.login(*credential)
        client.mail(msg.mail_from)
        for rcpt in msg.recipients:
            client.rcpt(rcpt)
        code, reply = client.data(msg.data)
    # The MTA names its own message id in the reply; the sink counts deliveries by it.
    assert code == 250 and reply.startswith(b"2.0.0 OK queued as "), reply
    platform_id = reply.decode().rsplit(" ", 1)[-1]
    assert wait_until(lambda: sink.delivered_counts()[platform_id] == 1, timeout=20)
