"""Forged bounces and complaints change nothing; a genuine one changes exactly its own.

Two teams send to the same address through the real MTA and the test sink. Reports then
come over SMTP to the inbound listener: another team's message id with a recipient it
never had, an unknown id, a tampered return-path token, the right token with the wrong
recipient. Each is refused (550 5.7.1), counted and leaves suppressions and events
alone. The genuine DSN, mailed to the signed return path the sink saw, suppresses that
recipient for that team only, and only once however often it is re-sent.
"""

from __future__ import annotations

import smtplib
from typing import Any

import pytest
from prometheus_client import REGISTRY

from kibamail.contracts import OutboundMessage
from kibamail.intake import PLATFORM_ID_HEADER, submit
from kibamail.redis_keys import RedisKeys
from kibamail.report_tokens import verify_return_path
from kibamail.settings import Settings
from mta.commit import address_domain
from testing.testnet import SinkServer, Zone

from .helpers import StatusReader, make_message, status_offsets, wait_until

pytestmark = pytest.mark.integration

RCPT = "shared-rcpt@example.org"


def forged(reason: str) -> float:
    value = REGISTRY.get_sample_value("kibamail_mta_forged_reports_total", {"reason": reason})
    return value or 0.0


def dsn(recipient: str, quoted_id: str = "") -> bytes:
    quoted = "From: news@sender.example\r\nSubject: hello\r\n"
    if quoted_id:
        quoted += f"{PLATFORM_ID_HEADER}: <{quoted_id}>\r\n"
    return (
        "From: MAILER-DAEMON@mx.example.org\r\nSubject: Undelivered Mail\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        "\r\n--B\r\nContent-Type: text/plain\r\n\r\nNot delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: User unknown\r\n"
        f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\n{quoted}--B--\r\n"
    ).encode()


def arf(recipient: str) -> bytes:
    return (
        "From: feedback@example.org\r\nSubject: complaint\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\r\n'
        "\r\n--F\r\nContent-Type: text/plain\r\n\r\nAn abuse report.\r\n"
        "--F\r\nContent-Type: message/feedback-report\r\n\r\n"
        f"Feedback-Type: abuse\r\nVersion: 1\r\nOriginal-Rcpt-To: <{recipient}>\r\n\r\n"
        "--F\r\nContent-Type: message/rfc822\r\n\r\n"
        f"From: news@sender.example\r\nTo: {recipient}\r\nSubject: hello\r\n\r\nbody\r\n"
        "--F--\r\n"
    ).encode()


def deliver(
    redis: Any, sink: SinkServer, teams: list[str], sender: str = "news@sender.example"
) -> dict[str, OutboundMessage]:
    """One real delivery to RCPT per team; returns once the MTA recorded each outcome."""
    sent = {}
    for team in teams:
        redis.set(RedisKeys.domain_ready(team, address_domain(sender)), "1")
        sent[team] = make_message([RCPT], team=team, sender=sender)
        submit(redis, sent[team])
    assert wait_until(
        lambda: all(
            redis.hget(RedisKeys.sent_recipients(m.team_id, m.message_id), f"rcpt:{RCPT}")
            is not None
            for m in sent.values()
        )
    )
    return sent


def return_path(sink: SinkServer, message_id: str) -> str:
    (record,) = [r for r in sink.records if r.message_id == message_id and r.answer_code == 250]
    return record.mail_from


def send(settings: Settings, rcpt: str, data: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", settings.mta.inbound_port, timeout=30) as client:
        client.ehlo()
        client.mail("")
        code, text = client.rcpt(rcpt)
        if code != 250:
            return code, text
        return client.data(data)


def test_delivery_uses_a_signed_return_path(
    running_mta: Settings, redis_client: Any, sink: SinkServer
) -> None:
    (message,) = deliver(redis_client, sink, ["team-verp"]).values()
    address = return_path(sink, message.message_id)
    local, _, domain = address.rpartition("@")
    ref = verify_return_path(running_mta.mta.report_token_secret, local)
    assert ref is not None and domain == "bounces.kibamail.test"
    assert (
        redis_client.get(RedisKeys.return_path(message.team_id, ref)) == message.message_id.encode()
    )
    assert address_domain(message.mail_from) == "sender.example"  # the message's own sender


def test_a_domain_with_the_return_path_cname_gets_its_own_bounces_domain(
    running_mta: Settings, redis_client: Any, sink: SinkServer, zone: Zone
) -> None:
    """bounces.<domain> CNAME -> the MTA host (api/services/domains.py): SPF-aligned return
    path on the sender's own domain, and its DSNs are taken on port 25."""
    zone.add("bounces.aligned.example", "CNAME", running_mta.mta.hostname)
    (message,) = deliver(redis_client, sink, ["team-cname"], "news@aligned.example").values()
    address = return_path(sink, message.message_id)
    assert address.endswith("@bounces.aligned.example")
    code, text = send(running_mta, address, dsn(RCPT))
    assert code == 250 and b"1 report items recorded" in text
    assert redis_client.smembers(RedisKeys.suppression("team-cname")) == {RCPT.encode()}
    # Not a relay: other addresses on that domain are still refused.
    code, text = send(running_mta, "someone@bounces.aligned.example", dsn(RCPT))
    assert code == 550 and b"Relaying denied" in text


def test_forged_reports_change_nothing_and_are_counted(
    running_mta: Settings, redis_client: Any, sink: SinkServer
) -> None:
    sent = deliver(redis_client, sink, ["team-fa", "team-fb"])
    victim_id = sent["team-fb"].message_id
    plain = "bounces@bounces.kibamail.test"
    before = {r: forged(r) for r in ("unknown_recipient", "unknown_message", "bad_token")}
    offsets = status_offsets(running_mta)

    # Team B's real message id, but a recipient it was never sent to.
    code, text = send(running_mta, plain, dsn("never-sent@example.org", victim_id))
    assert code == 550 and b"5.7.1" in text and b"never sent to the reported recipient" in text
    # An id we never issued.
    code, text = send(running_mta, plain, dsn(RCPT, "made-up@sender.example"))
    assert code == 550 and b"no message of ours has that id" in text
    # Team B's return path with one character of its token changed.
    verp = return_path(sink, victim_id)
    local, _, domain = verp.rpartition("@")
    flipped = local[:-1] + ("a" if local[-1] != "a" else "b")
    code, text = send(running_mta, f"{flipped}@{domain}", dsn(RCPT, victim_id))
    assert code == 550 and b"token invalid" in text
    # Team A's genuine return path, reporting a recipient of nobody's.
    code, text = send(running_mta, return_path(sink, sent["team-fa"].message_id), dsn("x@y.org"))
    assert code == 550 and b"never sent to the reported recipient" in text

    assert forged("unknown_recipient") == before["unknown_recipient"] + 2
    assert forged("unknown_message") == before["unknown_message"] + 1
    assert forged("bad_token") == before["bad_token"] + 1
    for team in sent:
        assert redis_client.scard(RedisKeys.suppression(team)) == 0

    # Control: a genuine report gets through, and it is the only report event of either
    # message (a forged one would have reached the outbox, hence Kafka, before it).
    code, _ = send(running_mta, return_path(sink, sent["team-fa"].message_id), dsn(RCPT))
    assert code == 250
    ids = {m.message_id for m in sent.values()}
    reader = StatusReader(running_mta, start_offsets=offsets, message_ids=ids)
    try:
        events = reader.poll_until(lambda ev: any(e.attempt == 1000 for e in ev), timeout=60)
    finally:
        reader.close()
    reports = [(e.team_id, e.recipient, e.status.value) for e in events if e.attempt == 1000]
    assert reports == [("team-fa", RCPT, "bounced")]


def test_genuine_bounce_suppresses_that_recipient_for_that_team_once(
    running_mta: Settings, redis_client: Any, sink: SinkServer
) -> None:
    sent = deliver(redis_client, sink, ["team-ga", "team-gb"])
    verp = return_path(sink, sent["team-ga"].message_id)
    offsets = status_offsets(running_mta)

    code, text = send(running_mta, verp, dsn(RCPT))
    assert code == 250 and b"1 report items recorded" in text
    assert redis_client.smembers(RedisKeys.suppression("team-ga")) == {RCPT.encode()}
    assert redis_client.scard(RedisKeys.suppression("team-gb")) == 0
    # The same report again, and by the quoted id to the plain address: nothing more.
    code, text = send(running_mta, verp, dsn(RCPT))
    assert code == 250 and b"0 report items recorded" in text
    quoted = dsn(RCPT, sent["team-ga"].message_id)
    code, text = send(running_mta, "bounces@bounces.kibamail.test", quoted)
    assert code == 250 and b"0 report items recorded" in text

    # A complaint about team B's message is another (team, message, recipient, kind); once
    # its event is in Kafka, every event queued before it (a duplicate bounce) is too.
    code, text = send(running_mta, return_path(sink, sent["team-gb"].message_id), arf(RCPT))
    assert code == 250 and b"1 report items recorded" in text
    ids = {m.message_id for m in sent.values()}
    reader = StatusReader(running_mta, start_offsets=offsets, message_ids=ids)
    try:
        events = reader.poll_until(
            lambda ev: any(e.status.value == "complained" for e in ev), timeout=60
        )
    finally:
        reader.close()
    reports = sorted(
        (e.team_id, e.message_id, e.recipient, e.status.value, e.bounce_class.value)
        for e in events
        if e.attempt == 1000
    )
    assert reports == [
        ("team-ga", sent["team-ga"].message_id, RCPT, "bounced", "hard"),
        ("team-gb", sent["team-gb"].message_id, RCPT, "complained", ""),
    ]
