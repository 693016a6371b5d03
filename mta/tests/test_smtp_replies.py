"""SMTP replies over real sockets: enhanced status codes everywhere, the per-day limit,
and the DATA-phase idle timeout (slow uploads flow, stalled clients get 421 4.4.2)."""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest

from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from mta.credentials import create_smtp_credential
from mta.smtp_session import with_enhanced_code
from testing.testnet import SinkServer

from .helpers import wait_until, with_policy, write_policy

pytestmark = pytest.mark.integration

TLS = ssl.create_default_context()
TLS.check_hostname = False
TLS.verify_mode = ssl.CERT_NONE
ENHANCED = re.compile(rb"^([245])\.\d{1,3}\.\d{1,3} ")
BODY = b"From: a@sender.example\r\nTo: b@example.org\r\nSubject: s\r\n\r\nHi.\r\n"


@pytest.fixture
def mta_settings(test_settings: Settings, tmp_path: Path) -> Settings:
    policy = write_policy(tmp_path / "p.toml", per_day=3, idle_timeout=1)
    return with_policy(test_settings, policy)


@pytest.fixture
def credential(redis_client: Any) -> tuple[str, str]:
    redis_client.set(RedisKeys.domain_ready("team-day", "sender.example"), "1")
    return create_smtp_credential(redis_client, "team-day")


def _client(settings: Settings, cred: tuple[str, str] | None = None) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", settings.mta.submission_port, timeout=15)
    client.starttls(context=TLS)
    client.ehlo()
    if cred:
        client.login(*cred)
    return client


def _assert_enhanced(reply: tuple[int, bytes], code: int) -> None:
    got, text = reply
    assert got == code, reply
    match = ENHANCED.match(text)
    assert match and match.group(1) == str(code)[0].encode(), reply


@pytest.mark.unit
@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("250 OK", "250 2.0.0 OK"),
        ("503 Error: need MAIL command", "503 5.5.1 Error: need MAIL command"),
        ('500 Error: command "FOO" not recognized', '500 5.5.1 Error: command "FOO" not'),
        ("501 Syntax: MAIL FROM: <address>", "501 5.5.4 Syntax"),
        ("552 Error: Too much mail data", "552 5.3.4 "),
        ("535 5.7.8 Authentication credentials invalid", "535 5.7.8 Authentication"),
        ("250-HELP", "250-2.0.0 HELP"),
        ("354 End data with <CR><LF>.<CR><LF>", "354 End data"),
    ],
)
def test_with_enhanced_code(reply: str, expected: str) -> None:
    assert with_enhanced_code(reply).startswith(expected)


def test_builtin_replies_carry_enhanced_codes(
    running_mta: Settings, credential: tuple[str, str]
) -> None:
    with smtplib.SMTP("127.0.0.1", running_mta.mta.submission_port, timeout=10) as plain:
        code, text = plain.ehlo("client.example")
        assert code == 250 and not ENHANCED.match(text)  # RFC 2034: EHLO lines exempt
        assert plain.has_extn("enhancedstatuscodes")
        _assert_enhanced(plain.docmd("NOOP"), 250)
        _assert_enhanced(plain.docmd("RSET"), 530)  # STARTTLS first
        _assert_enhanced(plain.docmd("STARTTLS", "now"), 501)
        _assert_enhanced(plain.docmd("QUIT"), 221)
    with _client(running_mta) as tls:
        _assert_enhanced(tls.docmd("RSET"), 250)
        _assert_enhanced(tls.docmd("HELO"), 501)
        _assert_enhanced(tls.docmd("MAIL", "FROM:<a@sender.example>"), 530)  # AUTH first
        _assert_enhanced(tls.docmd("VRFY", "someone@example.org"), 530)
        code, text = tls.docmd("HELO", "client.example")
        assert code == 250 and not ENHANCED.match(text)
    with _client(running_mta, credential) as client:
        _assert_enhanced(client.docmd("AUTH", "PLAIN AGZvbwBiYXI="), 503)  # already authed
        _assert_enhanced(client.docmd("RCPT", "TO:<b@example.org>"), 503)  # need MAIL
        _assert_enhanced(client.docmd("DATA"), 503)  # need RCPT
        _assert_enhanced(client.docmd("MAIL", "TO:<a@sender.example>"), 501)
        _assert_enhanced(client.docmd("MAIL", "FROM:<a@sender.example> SIZE=99999999999"), 552)
        _assert_enhanced(client.docmd("MAIL", "FROM:<a@sender.example> FOO=BAR"), 555)
        _assert_enhanced(client.docmd("MAIL", "FROM:<a@sender.example>"), 250)
        _assert_enhanced(client.docmd("MAIL", "FROM:<a@sender.example>"), 503)  # nested
        _assert_enhanced(client.docmd("RCPT", "FROM:<b@example.org>"), 501)
        _assert_enhanced(client.docmd("RCPT", "TO:<b@example.org>"), 250)
        _assert_enhanced(client.docmd("DATA", "now"), 501)
        _assert_enhanced(client.docmd("RSET", "x"), 501)
        _assert_enhanced(client.docmd("HELP"), 250)
        _assert_enhanced(client.docmd("VRFY", "someone@example.org"), 252)
        _assert_enhanced(client.docmd("VRFY"), 501)
        _assert_enhanced(client.docmd("EXPN", "list"), 502)
        _assert_enhanced(client.docmd("FROBNICATE"), 500)
        _assert_enhanced(client.docmd("RSET"), 250)


def test_per_day_limit_refuses_with_451_and_changes_nothing(
    running_mta: Settings, credential: tuple[str, str], redis_client: Any, sink: SinkServer
) -> None:
    """per_day = 3 recipients: 2 + 1 pass, the next is refused until the day turns."""
    redis_client.set(RedisKeys.domain_ready("team-other", "sender.example"), "1")
    other = create_smtp_credential(redis_client, "team-other")
    with _client(running_mta, credential) as client:
        client.sendmail("a@sender.example", ["b@example.org", "c@example.org"], BODY)
        client.sendmail("a@sender.example", ["d@example.org"], BODY)
        with pytest.raises(smtplib.SMTPDataError) as info:
            client.sendmail("a@sender.example", ["e@example.org"], BODY)
    assert info.value.smtp_code == 451
    error: bytes | str = info.value.smtp_error
    assert isinstance(error, bytes) and error.startswith(b"4.7.1 Daily sending limit")
    day = time.strftime("%Y%m%d", time.gmtime())
    assert redis_client.get(RedisKeys.rate_bucket("team-day", day)) == b"3"  # not taken
    with _client(running_mta, other) as client:  # another team is not affected
        client.sendmail("a@sender.example", ["f@example.org"], BODY)
    assert wait_until(lambda: len([r for r in sink.records if r.answer_code == 250]) == 4)
    time.sleep(0.5)  # nothing else queued: the refused message never shows up
    assert sorted(r.rcpt for r in sink.records) == [f"{x}@example.org" for x in "bcdf"]


def _start_data(settings: Settings, cred: tuple[str, str]) -> smtplib.SMTP:
    client = _client(settings, cred)
    client.mail("a@sender.example")
    client.rcpt("b@example.org")
    code, _ = client.docmd("DATA")
    assert code == 354
    return client


def test_slow_but_steady_upload_is_not_cut(
    running_mta: Settings, credential: tuple[str, str], sink: SinkServer
) -> None:
    """Idle timeout 1 s; the body trickles in for ~3 s, one chunk every 0.3 s."""
    client = _start_data(running_mta, credential)
    assert client.sock is not None
    client.sock.sendall(b"From: a@sender.example\r\nTo: b@example.org\r\nSubject: slow\r\n\r\n")
    started = time.monotonic()
    while time.monotonic() - started < 3.0:
        time.sleep(0.3)
        client.sock.sendall(b"x" * 100 + b"\r\n")
    client.sock.sendall(b".\r\n")
    code, text = client.getreply()
    client.quit()
    assert code == 250 and text.startswith(b"2.0.0 OK queued as")


def test_stalled_clients_get_421_and_others_are_served(
    running_mta: Settings, credential: tuple[str, str]
) -> None:
    in_data = _start_data(running_mta, credential)
    assert in_data.sock is not None
    in_data.sock.sendall(b"Subject: stalled\r\n")
    idle = socket.create_connection(("127.0.0.1", running_mta.mta.submission_port), timeout=10)
    assert idle.recv(200).startswith(b"220")
    with smtplib.SMTP("127.0.0.1", running_mta.mta.submission_port, timeout=10) as other:
        other.ehlo()
        assert other.noop()[0] == 250  # served while the two others stall
    for sock in (in_data.sock, idle):
        sock.settimeout(10)
        received = b""
        while chunk := sock.recv(200):
            received += chunk
        assert received.startswith(b"421 4.4.2"), received  # then closed (EOF)
        sock.close()
