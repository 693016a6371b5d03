"""The MTA keys every submission by its own id, never by the client's Message-ID alone:
two teams reusing one Message-ID get distinct ids and mappings, and bounces quoting the
X-Kibamail-Message-ID header reach the message (and team) that really sent the mail."""

from __future__ import annotations

import email
import smtplib
import ssl
import uuid
from typing import Any

import orjson
import pytest

from kibamail.intake import PLATFORM_ID_HEADER, message_id_of, original_message_id
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from mta.credentials import create_smtp_credential
from mta.inbound import parse_report
from mta.server import ensure_message_id
from testing.testnet import SinkServer

from .helpers import wait_until

TLS = ssl.create_default_context()
TLS.check_hostname = False
TLS.verify_mode = ssl.CERT_NONE


def _dsn(quoted_headers: str, recipient: str) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.example.org\r\n"
        "To: bounces@bounces.kibamail.test\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        "\r\n--B\r\nContent-Type: text/plain\r\n\r\nNot delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: User unknown\r\n"
        f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\n{quoted_headers}--B--\r\n"
    ).encode()


def test_ensure_message_id_drops_a_client_supplied_platform_header() -> None:
    data = (
        b"From: a@x.example\r\nX-Kibamail-Message-ID: <victim@x.example>\r\n\tfolded\r\n"
        b"Message-ID: <c@x.example>\r\n\r\nhi\r\n"
    )
    message_id, stamped = ensure_message_id(data, "x.example")
    assert stamped.count(b"X-Kibamail-Message-ID") == 1 and b"victim" not in stamped
    assert b"folded" not in stamped and b"Message-ID: <c@x.example>\r\n" in stamped
    assert message_id_of(stamped) == message_id


def test_message_id_of_prefers_the_platform_header() -> None:
    head = b"Message-ID: <client@x>\r\nSubject: s\r\nx-kibamail-message-id: <ours@x>\r\n\r\n"
    assert message_id_of(head + b"Message-ID: <in-body@x>\r\n") == "ours@x"
    assert message_id_of(b"Message-ID: <client@x>\r\n\r\nbody\r\n") == "client@x"
    assert message_id_of(b"Subject: none\r\n\r\nMessage-ID: <in-body@x>\r\n") == ""
    parsed = email.message_from_string("Message-ID: <client@x>\nX-Kibamail-Message-ID: <ours@x>\n")
    assert original_message_id(parsed) == "ours@x"


def test_parse_report_correlates_by_the_platform_header() -> None:
    quoted = "From: a@sender.example\r\nMessage-ID: <shared@client>\r\n"
    (item,) = parse_report(
        _dsn(f"{quoted}{PLATFORM_ID_HEADER}: <ours@sender.example>\r\n", "x@y.org")
    )
    assert item.message_id == "ours@sender.example"
    (fallback,) = parse_report(_dsn(quoted, "x@y.org"))
    assert fallback.message_id == "shared@client"


def _submit(settings: Settings, credential: tuple[str, str], rcpt: str, data: bytes) -> str:
    """Submit over STARTTLS; returns the platform id from the 250 reply."""
    with smtplib.SMTP("127.0.0.1", settings.mta.submission_port, timeout=15) as client:
        client.starttls(context=TLS)
        client.ehlo()
        client.login(*credential)
        assert client.mail("a@sender.example")[0] == 250
        assert client.rcpt(rcpt)[0] == 250
        code, reply = client.data(data)
    assert code == 250, reply
    return reply.decode().rsplit(" ", 1)[-1]


@pytest.mark.integration
def test_two_teams_reusing_a_message_id_stay_apart_and_bounces_find_the_sender(
    running_mta: Settings, redis_client: Any, sink: SinkServer
) -> None:
    client_id = f"shared-{uuid.uuid4().hex[:8]}@sender.example"
    data = (
        f"From: a@sender.example\r\nTo: r@example.org\r\nSubject: s\r\n"
        f"Message-ID: <{client_id}>\r\n\r\nHello.\r\n"
    ).encode()
    teams = ("team-pid-a", "team-pid-b")
    for team in teams:
        redis_client.set(RedisKeys.domain_ready(team, "sender.example"), "1")
    ids = {
        team: _submit(
            running_mta, create_smtp_credential(redis_client, team), f"{team}@example.org", data
        )
        for team in teams
    }
    assert len(set(ids.values())) == 2 and client_id not in ids.values()
    for team, message_id in ids.items():
        assert message_id.endswith("@sender.example")
        mapping = orjson.loads(redis_client.get(RedisKeys.message_mapping(team, message_id)))
        assert mapping["team_id"] == team
    assert all(redis_client.get(RedisKeys.message_mapping(t, client_id)) is None for t in teams)

    assert wait_until(lambda: all(sink.delivered_counts()[m] == 1 for m in ids.values()), 20)
    for message_id in ids.values():
        delivered = email.message_from_bytes(sink.handler.messages[message_id])
        assert delivered["Message-ID"] == f"<{client_id}>"  # the client's header, untouched
        assert delivered[PLATFORM_ID_HEADER] == f"<{message_id}>"

    # A bounce quotes the delivered headers: the platform id picks team B's message (once
    # the MTA recorded the delivery: reports about recipients never sent to are refused).
    sent_b = RedisKeys.sent_recipients("team-pid-b", ids["team-pid-b"])
    assert wait_until(lambda: redis_client.exists(sent_b) == 1)
    bounced = "team-pid-b@example.org"
    quoted = f"From: a@sender.example\r\nMessage-ID: <{client_id}>\r\n"
    quoted += f"{PLATFORM_ID_HEADER}: <{ids['team-pid-b']}>\r\n"
    with smtplib.SMTP("127.0.0.1", running_mta.mta.inbound_port, timeout=10) as client:
        client.sendmail("", ["bounces@bounces.kibamail.test"], _dsn(quoted, bounced))
    assert wait_until(lambda: redis_client.sismember(RedisKeys.suppression("team-pid-b"), bounced))
    assert redis_client.scard(RedisKeys.suppression("team-pid-a")) == 0
