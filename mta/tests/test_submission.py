"""The SMTP submission server over real TLS sockets: AUTH, policies, and every bad input."""

from __future__ import annotations

import email
import json
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from mta.credentials import create_smtp_credential, revoke_smtp_credential
from testing.testnet import SinkServer

from .conftest import start_mta
from .helpers import queued, wait_until, with_policy, write_policy

pytestmark = pytest.mark.integration

TLS = ssl.create_default_context()
TLS.check_hostname = False
TLS.verify_mode = ssl.CERT_NONE


@pytest.fixture
def mta_settings(test_settings: Settings, tmp_path: Path) -> Settings:
    policy = write_policy(tmp_path / "policies.toml", per_ip=6, per_second=2, burst=3)
    return with_policy(test_settings, policy, max_message_bytes=20_000)


@pytest.fixture
def credential(redis_client: Any) -> tuple[str, str]:
    redis_client.set(RedisKeys.domain_ready("team-smtp", "sender.example"), "1")
    return create_smtp_credential(redis_client, "team-smtp")


def _body(message_id: str = "", extra_headers: str = "", body: str = "Hi.\r\n") -> bytes:
    mid = f"Message-ID: <{message_id}>\r\n" if message_id else ""
    return (
        f"From: a@sender.example\r\nTo: b@example.org\r\nSubject: s\r\n{mid}{extra_headers}"
        f"\r\n{body}"
    ).encode()


def _by_client_message_id(sink: SinkServer) -> dict[str, str]:
    """Client Message-ID header -> platform id, over the messages the sink kept."""
    kept = dict(sink.handler.messages)
    return {str(email.message_from_bytes(d)["Message-ID"]): mid for mid, d in kept.items()}


def _client(settings: Settings, cred: tuple[str, str] | None) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", settings.mta.submission_port, timeout=15)
    client.starttls(context=TLS)
    client.ehlo()
    if cred:
        client.login(*cred)
    return client


def test_auth_requires_tls_and_valid_credentials(
    running_mta: Settings, credential: tuple[str, str], redis_client: Any
) -> None:
    plain = smtplib.SMTP("127.0.0.1", running_mta.mta.submission_port, timeout=10)
    plain.ehlo()
    assert not plain.has_extn("auth")
    code, _ = plain.docmd("AUTH", "PLAIN AGZvbwBiYXI=")
    assert code in (530, 538)  # STARTTLS first / encryption required
    code, _ = plain.docmd("MAIL", "FROM:<a@sender.example>")
    assert code == 530
    plain.quit()
    with _client(running_mta, None) as client:
        assert client.has_extn("auth") and client.has_extn("size")
        assert client.has_extn("8bitmime") and client.has_extn("smtputf8")
        assert client.has_extn("pipelining") and client.has_extn("enhancedstatuscodes")
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            client.login(credential[0], "wrong-password")
        assert info.value.smtp_code == 535
    revoke_smtp_credential(redis_client, credential[0])
    with _client(running_mta, None) as client, pytest.raises(smtplib.SMTPAuthenticationError):
        client.login(*credential)


def test_submission_is_queued_and_delivered(
    running_mta: Settings, credential: tuple[str, str], sink: SinkServer, redis_client: Any
) -> None:
    with _client(running_mta, credential) as client:
        # Headers that try to name another credential or an API key change nothing: the
        # mapping records the credential that authenticated the session.
        forged = "X-Kibamail-Smtp-Credential: kbsmtp_forged\r\nX-Kibamail-Api-Key-Id: k1\r\n"
        refused = client.sendmail(
            "a@sender.example", ["b@example.org"], _body("sub-1@sender.example", forged)
        )
        assert refused == {}
    # implicit TLS on the smtps port, AUTH LOGIN
    with smtplib.SMTP_SSL(
        "127.0.0.1", running_mta.mta.smtps_port, context=TLS, timeout=15
    ) as client:
        client.user, client.password = credential
        client.ehlo()
        code, _ = client.auth("LOGIN", client.auth_login, initial_response_ok=False)
        assert code == 235
        client.sendmail("a@sender.example", ["c@example.org"], _body())
    assert wait_until(lambda: len(sink.delivered_counts()) == 2)
    # Deliveries are counted per platform id; the client's Message-ID is kept beside it.
    platform_id = _by_client_message_id(sink)["<sub-1@sender.example>"]
    assert platform_id != "sub-1@sender.example" and sink.delivered_counts()[platform_id] == 1
    added = next(mid for mid in sink.delivered_counts() if mid != platform_id)
    assert added.endswith("@sender.example")  # Message-ID added when the client sent none
    mapping = json.loads(redis_client.get(RedisKeys.message_mapping("team-smtp", platform_id)))
    assert mapping["team_id"] == "team-smtp"
    assert (mapping["smtp_credential_id"], mapping["api_key_id"]) == (credential[0], "")
    other = json.loads(redis_client.get(RedisKeys.message_mapping("team-smtp", added)))
    assert other["smtp_credential_id"] == credential[0]


def test_bad_inputs_get_the_right_codes(
    running_mta: Settings, credential: tuple[str, str], redis_client: Any
) -> None:
    with _client(running_mta, credential) as client:
        code, _ = client.docmd("FOO", "bar")
        assert code == 500
        code, _ = client.docmd("MAIL", "FROM:<not an address>")
        assert code in (501, 553)
        client.command_encoding = "utf-8"
        code, _ = client.docmd("MAIL", "FROM:<üser@sender.example>")
        assert code == 553  # internationalized address without SMTPUTF8
        code, _ = client.docmd("MAIL", "FROM:<üser@sender.example> SMTPUTF8")
        assert code == 250
        client.rset()
        client.mail("a@sender.example")
        code, _ = client.docmd("RCPT", "TO:<nodomain>")
        assert code in (501, 553)
        for i in range(5):
            assert client.rcpt(f"r{i}@example.org")[0] == 250
        code, msg = client.rcpt("r6@example.org")
        assert code == 452 and b"4.5.3" in msg
        client.rset()
        code, _ = client.docmd("NOOP " + "x" * 600)
        assert code == 500
        for data, expected in [
            (b"From: a@sender.example\nTo: b@example.org\n\nbare lf\n", 550),
            (_body(extra_headers="Bcc injected\r\n"), 550),
            (_body(extra_headers="From: second@sender.example\r\n"), 550),
            (_body(body="x" * 1200 + "\r\n"), 500),
            (_body(body=("y" * 900 + "\r\n") * 30), 552),
        ]:
            # No SIZE= on MAIL, so the server has to catch oversize DATA itself.
            assert client.mail("a@sender.example")[0] == 250
            assert client.rcpt("b@example.org")[0] == 250
            code, text = client.data(data)
            assert code == expected, (data[:60], code, text)
            client.rset()
        code, _ = client.docmd("MAIL", "FROM:<a@sender.example> SIZE=999999")
        assert code == 552
        # Still serving this client normally afterwards.
        assert client.sendmail("a@sender.example", ["ok@example.org"], _body()) == {}
    assert queued(redis_client) >= 0


def test_policies_team_paused_and_rate_limit(
    running_mta: Settings, credential: tuple[str, str], redis_client: Any
) -> None:
    redis_client.set(RedisKeys.team_paused("team-smtp"), json.dumps({"reason": "bulk score 0.97"}))
    with _client(running_mta, credential) as client:
        with pytest.raises(smtplib.SMTPDataError) as info:
            client.sendmail("a@sender.example", ["b@example.org"], _body())
        assert info.value.smtp_code == 451 and b"bulk score 0.97" in info.value.smtp_error
        redis_client.delete(RedisKeys.team_paused("team-smtp"))
        codes = []
        for _ in range(6):
            try:
                client.sendmail("a@sender.example", ["b@example.org"], _body())
                codes.append(250)
            except smtplib.SMTPDataError as exc:
                codes.append(exc.smtp_code)
                client.rset()
        assert codes[:3] == [250, 250, 250] and 451 in codes[3:]


def test_auth_brute_force_delay_then_lockout(
    running_mta: Settings, credential: tuple[str, str]
) -> None:
    answers = []
    for _ in range(5):
        with _client(running_mta, None) as client:
            client.user, client.password = credential[0], "guess"
            try:
                client.auth("PLAIN", client.auth_plain)  # one attempt (login() tries two)
            except smtplib.SMTPAuthenticationError as exc:
                answers.append(exc.smtp_code)
    assert answers[:4] == [535, 535, 535, 535] and answers[4] == 454
    with _client(running_mta, None) as client, pytest.raises(smtplib.SMTPAuthenticationError):
        client.login(*credential)  # locked out even with the right password


def test_connection_limit_and_stalled_client(running_mta: Settings, credential: Any) -> None:
    port = running_mta.mta.submission_port
    stalled = [socket.create_connection(("127.0.0.1", port)) for _ in range(6)]
    try:
        extra = socket.create_connection(("127.0.0.1", port), timeout=5)
        assert extra.recv(200).startswith(b"421 4.7.0")
        extra.close()
    finally:
        for sock in stalled:
            sock.close()
    time.sleep(0.2)
    stalled_one = socket.create_connection(("127.0.0.1", port), timeout=10)
    assert stalled_one.recv(200).startswith(b"220")
    with _client(running_mta, credential) as client:  # others are served meanwhile
        assert client.noop()[0] == 250
    stalled_one.settimeout(10)
    data = b""
    while chunk := stalled_one.recv(200):  # idle timeout closes the stalled client
        data += chunk
    stalled_one.close()


def test_inbound_refuses_relay(running_mta: Settings) -> None:
    with smtplib.SMTP("127.0.0.1", running_mta.mta.inbound_port, timeout=10) as client:
        client.ehlo()
        client.mail("someone@elsewhere.example")
        code, text = client.rcpt("victim@example.org")
        assert code == 550 and b"Relaying denied" in text


@pytest.fixture
def uvloop_mta(
    mta_settings: Settings,
    redis_client: Any,
    kafka_service: str,
    sink: SinkServer,
    dns_server: Any,
) -> Iterator[Settings]:
    import uvloop

    from local_stack.stack import tcp_open

    _thread, stopper = start_mta(mta_settings, loop_factory=uvloop.new_event_loop)
    assert wait_until(lambda: tcp_open(mta_settings.mta.submission_port), 10, 0.05)
    yield mta_settings
    stopper()


def test_starttls_and_auth_on_uvloop(
    uvloop_mta: Settings, redis_client: Any, sink: SinkServer
) -> None:
    redis_client.set(RedisKeys.domain_ready("team-uvloop", "sender.example"), "1")
    username, password = create_smtp_credential(redis_client, "team-uvloop")
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    port = uvloop_mta.mta.submission_port
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo()
        assert client.docmd("AUTH", "PLAIN AGZvbwBiYXI=")[0] in (530, 538)  # TLS first
        client.starttls(context=tls)
        client.ehlo()  # RFC 3207: a fresh session after the handshake
        assert client.has_extn("auth")
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login(username, "wrong")
        client.login(username, password)
        for i in range(3):
            body = (
                f"From: a@sender.example\r\nSubject: s\r\nMessage-ID: <uv-{i}@sender.example>"
                "\r\n\r\nbody\r\n"
            )
            assert client.sendmail("a@sender.example", [f"u{i}@example.org"], body) == {}
    wanted = {f"<uv-{i}@sender.example>" for i in range(3)}
    assert wait_until(lambda: wanted <= set(_by_client_message_id(sink)), 30)
