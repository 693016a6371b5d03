"""PROXY protocol only from trusted load balancers, per listener; the AUTH lockout of an IP
is not reset by a login with another credential.

The attacker here connects straight to the MTA and sends a PROXY header naming an IP of
its choice (to dodge its own lockout or connection limit, or to frame someone else)."""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from mta.brute_force import AuthGuard
from mta.config import SubmissionConfig, is_trusted, load_config
from mta.credentials import create_smtp_credential

from .helpers import wait_until, with_policy, write_policy

pytestmark = pytest.mark.integration

SPOOFED = "203.0.113.77"


def proxy_v2(src: str, src_port: int = 40000, dst_port: int = 587) -> bytes:
    signature = b"\r\n\r\n\x00\r\nQUIT\n"
    body = (
        socket.inet_aton(src)
        + socket.inet_aton("127.0.0.1")
        + struct.pack("!HH", src_port, dst_port)
    )
    return signature + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


def proxy_v1(src: str) -> bytes:
    return f"PROXY TCP4 {src} 127.0.0.1 40000 587\r\n".encode()


@pytest.fixture
def mta_settings(test_settings: Settings, tmp_path: Path, request: Any) -> Settings:
    """Trusted proxies on every listener: 127.0.0.1 unless the test says otherwise."""
    trusted = getattr(request, "param", "127.0.0.1")
    policy = write_policy(tmp_path / "policies.toml")
    if trusted:
        entries = f'["{trusted}"]'
        policy.write_text(
            policy.read_text() + f"\n[submission.trusted_proxies]\nsubmission = {entries}\n"
            f"smtps = {entries}\ninbound = {entries}\n"
        )
    return with_policy(test_settings, policy)


def _ports(settings: Settings) -> dict[str, int]:
    mta = settings.mta
    return {"submission": mta.submission_port, "smtps": mta.smtps_port, "inbound": mta.inbound_port}


def _exchange(port: int, first: bytes, *, wait_greeting: bool = False) -> bytes:
    """Connect, (optionally read the greeting,) send ``first``, return all the MTA says."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        data = sock.recv(200) if wait_greeting else b""
        sock.sendall(first)
        try:
            while chunk := sock.recv(200):
                data += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return data


class TlsAfterHeader:
    """A blocking TLS client over a socket that first sent a PROXY header, with the TLS
    ClientHello in the same write (as HAProxy forwards it when the client was quick)."""

    def __init__(self, port: int, header: bytes) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing)
        with contextlib.suppress(ssl.SSLWantReadError):
            self.tls.do_handshake()
        self.sock.sendall(header + self.outgoing.read())
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._pump()
        self._flush()

    def _flush(self) -> None:
        if pending := self.outgoing.read():
            self.sock.sendall(pending)

    def _pump(self) -> None:
        self._flush()
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        self.incoming.write(data)

    def line(self) -> bytes:
        buffer = b""
        while not buffer.endswith(b"\r\n"):
            try:
                buffer += self.tls.read(1)
            except ssl.SSLWantReadError:
                self._pump()
        return buffer

    def reply(self) -> bytes:
        lines = [self.line()]
        while lines[-1][3:4] == b"-":
            lines.append(self.line())
        return b"".join(lines)

    def send(self, data: bytes) -> None:
        self.tls.write(data)
        self._flush()

    def close(self) -> None:
        self.sock.close()


def test_config_rejects_the_blanket_switch_and_matches_networks() -> None:
    with pytest.raises(ValueError, match=r"replaced by \[submission.trusted_proxies\]"):
        SubmissionConfig.model_validate({"proxy_protocol": True})
    config = SubmissionConfig.model_validate({"trusted_proxies": {"smtps": ["10.1.0.0/24"]}})
    networks = config.trusted_proxies.for_listener("smtps")
    assert is_trusted("10.1.0.9", networks) and is_trusted("::ffff:10.1.0.9", networks)
    assert not is_trusted("10.1.1.9", networks) and not is_trusted("not-an-ip", networks)
    assert config.trusted_proxies.for_listener("submission") == ()
    shipped = load_config(Path(__file__).resolve().parents[1] / "config" / "policies.toml")
    assert shipped.submission.trusted_proxies.for_listener("inbound") == ()


@pytest.mark.parametrize("mta_settings", [""], indirect=True)
def test_direct_listeners_refuse_a_proxy_header(running_mta: Settings, redis_client: Any) -> None:
    for listener, port in _ports(running_mta).items():
        if listener == "smtps":
            continue  # TLS from the first byte: a clear-text header is no handshake
        for header in (proxy_v1(SPOOFED), proxy_v2(SPOOFED)):
            # The greeting goes out on connect; the header (sent at once, as a proxy does,
            # or after the greeting) is refused and the connection closed, nothing else.
            for wait in (False, True):
                answer = _exchange(port, header + b"EHLO x\r\n", wait_greeting=wait)
                lines = answer.splitlines()
                assert lines[0].startswith(b"220 "), (listener, answer)
                assert lines[1:] == [b"554 5.7.1 PROXY protocol is not accepted from your address"]
    assert redis_client.get(RedisKeys.auth_failures(SPOOFED)) is None


@pytest.mark.parametrize("mta_settings", ["192.0.2.1"], indirect=True)
def test_untrusted_peers_are_refused_before_any_header(running_mta: Settings) -> None:
    for listener, port in _ports(running_mta).items():
        for first in (proxy_v2(SPOOFED), proxy_v1(SPOOFED), b"EHLO client\r\n"):
            answer = _exchange(port, first)
            expected = b"554 5.7.1 This listener takes connections only from its load balancer"
            assert answer == expected + b"\r\n", (listener, answer)


def test_trusted_proxy_without_a_header_is_refused(running_mta: Settings) -> None:
    for listener, port in _ports(running_mta).items():
        answer = _exchange(port, b"EHLO no-header-here\r\n")
        assert answer == b"421 4.7.0 PROXY protocol header required\r\n", (listener, answer)


def test_every_listener_takes_v1_and_v2_from_the_trusted_proxy(running_mta: Settings) -> None:
    ports = _ports(running_mta)
    for listener in ("submission", "inbound"):
        for header in (proxy_v1("198.51.100.1"), proxy_v2("198.51.100.2")):
            with socket.create_connection(("127.0.0.1", ports[listener]), timeout=10) as sock:
                sock.sendall(header + b"EHLO lb.example\r\n")  # header and command together
                data = b""
                while b"250 " not in data:
                    data += sock.recv(4096)
                assert data.startswith(b"220 "), (listener, data)
    # The proxy's own health check (v2 LOCAL: no client named) is served as the proxy.
    local = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x20, 0x00]) + b"\x00\x00"
    with socket.create_connection(("127.0.0.1", ports["submission"]), timeout=10) as sock:
        sock.sendall(local)
        assert sock.recv(200).startswith(b"220 ")
    smtps = TlsAfterHeader(ports["smtps"], proxy_v2("198.51.100.3", dst_port=465))
    try:
        assert smtps.reply().startswith(b"220 ")
        smtps.send(b"EHLO lb.example\r\n")
        assert b"250-AUTH LOGIN PLAIN" in smtps.reply()  # implicit TLS: AUTH is offered
    finally:
        smtps.close()


def test_a_client_gone_before_the_tls_handshake_is_released(running_mta: Settings) -> None:
    """465 behind a proxy: header, then the client leaves; nothing stays counted."""
    port = running_mta.mta.smtps_port
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(proxy_v2(SPOOFED, dst_port=465))
            time.sleep(0.3)  # let the MTA read the header and wait for the handshake
    gauge = {"listener": "smtps"}
    assert wait_until(
        lambda: REGISTRY.get_sample_value("kibamail_mta_smtp_connections", gauge) == 0, timeout=10
    )
    smtps = TlsAfterHeader(port, proxy_v2(SPOOFED, dst_port=465))  # the IP is free again
    try:
        assert smtps.reply().startswith(b"220 ")
    finally:
        smtps.close()


def _auth_via_proxy(port: int, client: str, username: str, password: str) -> bytes:
    token = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
    smtps = TlsAfterHeader(port, proxy_v2(client, dst_port=465))
    try:
        smtps.reply()
        smtps.send(b"EHLO attacker.example\r\n")
        smtps.reply()
        smtps.send(f"AUTH PLAIN {token}\r\n".encode())
        return smtps.reply()
    finally:
        smtps.close()


def test_a_login_with_another_credential_does_not_reset_the_ip_lockout(
    running_mta: Settings, redis_client: Any
) -> None:
    """Guess a victim's password, then log in with the attacker's own credential from the
    same IP: the guesses still count (lockout after 4 in the test policy)."""
    port = running_mta.mta.smtps_port
    victim = create_smtp_credential(redis_client, "team-victim")
    own = create_smtp_credential(redis_client, "team-attacker")
    attacker = "203.0.113.200"
    answers = [_auth_via_proxy(port, attacker, victim[0], "guess")[:3] for _ in range(3)]
    assert answers == [b"535"] * 3
    assert _auth_via_proxy(port, attacker, *own).startswith(b"235 2.7.0")
    assert redis_client.get(RedisKeys.auth_failures(attacker)) == b"3"  # not reset
    assert _auth_via_proxy(port, attacker, victim[0], "guess-4").startswith(b"535")
    locked = _auth_via_proxy(port, attacker, *own)
    assert locked.startswith(b"454 4.7.0 Too many failed authentication attempts"), locked
    # Another client IP (the header a trusted proxy sends) is not affected.
    assert _auth_via_proxy(port, "198.51.100.9", *own).startswith(b"235")


def test_a_successful_login_clears_only_its_own_credential_counter(
    running_mta: Settings, redis_client: Any
) -> None:
    port = running_mta.mta.smtps_port
    owner = create_smtp_credential(redis_client, "team-owner")
    other = create_smtp_credential(redis_client, "team-other")
    typo_ip, office_ip = "198.51.100.20", "198.51.100.21"
    for username in (owner[0], other[0]):
        assert _auth_via_proxy(port, typo_ip, username, "typo").startswith(b"535")
    owner_key, other_key = AuthGuard.credential_key(owner[0]), AuthGuard.credential_key(other[0])
    assert redis_client.get(owner_key) == b"1" and redis_client.get(other_key) == b"1"
    assert _auth_via_proxy(port, office_ip, *owner).startswith(b"235")
    assert redis_client.get(owner_key) is None  # the owner got in: its counter is cleared
    assert redis_client.get(other_key) == b"1"  # nobody else's
    assert redis_client.get(RedisKeys.auth_failures(typo_ip)) == b"2"  # the IP's decays by time
    assert 0 < redis_client.ttl(RedisKeys.auth_failures(typo_ip)) <= 60
