"""Real-world report formats over real SMTP on loopback, and the attacks on them.

Teams deliver through the real MTA to the test sink; reports in the formats real MTAs
send (an Exim plain-text bounce, an Office 365 NDR, an auto-reply, a delay warning, ARF
complaints) then come to the inbound listener. A genuine bounce to a signed return path
gives exactly one ``bounced`` event with its reason; the same text to a tampered token,
with a tampered token inside, or naming another team's message changes nothing; an
auto-reply and a delay warning never suppress; a complaint suppresses for that team
only; a not-spam report lifts it again.
"""

from __future__ import annotations

from typing import Any

import pytest

from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from testing.testnet import SinkServer

from .helpers import StatusReader, status_offsets
from .test_forged_reports import RCPT, deliver, forged, return_path, send

pytestmark = pytest.mark.integration

PLAIN = "bounces@bounces.kibamail.test"


def exim(verp: str, rcpt: str, platform_id: str = "") -> bytes:
    quoted_id = f"X-Kibamail-Message-ID: <{platform_id}>\n" if platform_id else ""
    return (
        (
            "Return-Path: <>\n"
            "From: Mail Delivery System <Mailer-Daemon@mx.example.org>\n"
            f"To: {verp}\n"
            "Subject: Mail delivery failed: returning message to sender\n"
            f"X-Failed-Recipients: {rcpt}\n"
            "Content-Type: text/plain; charset=us-ascii\n\n"
            "This message was created automatically by mail delivery software.\n\n"
            "A message that you sent could not be delivered to one or more of its\n"
            "recipients. This is a permanent error. The following address(es) failed:\n\n"
            f"  {rcpt}\n"
            "    host mx.example.org [192.0.2.50]\n"
            f"    SMTP error from remote mail server after RCPT TO:<{rcpt}>:\n"
            f"    550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in local "
            "recipient table\n\n"
            "------ This is a copy of the message, including all the headers. ------\n\n"
            f"Return-Path: <{verp}>\n"
            "From: news@sender.example\n"
            f"To: <{rcpt}>\n"
            "Subject: hello\n"
            f"{quoted_id}\n"
            "Hello there.\n"
        )
        .replace("\n", "\r\n")
        .encode()
    )  # SMTP lines end in CRLF


def office365(verp: str, rcpt: str) -> bytes:
    return (
        "From: Microsoft Outlook <postmaster@tenant.onmicrosoft.example>\r\n"
        f"To: <{verp}>\r\n"
        "Subject: Undeliverable: hello\r\n"
        "X-MS-Exchange-Message-Is-Ndr:\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="NDR"\r\n'
        "\r\n--NDR\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "Your message to the recipient couldn't be delivered.\r\n\r\n"
        "Diagnostic information for administrators:\r\n\r\n"
        "Generating server: DB8PR01MB0001.eurprd01.prod.outlook.example\r\n\r\n"
        f"{rcpt}\r\n"
        "Remote Server returned '550 5.7.708 Service unavailable. Access denied, traffic "
        "not accepted from this IP.'\r\n"
        "\r\n--NDR\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns;DB8PR01MB0001.eurprd01.prod.outlook.example\r\n\r\n"
        f"Final-Recipient: rfc822;{rcpt}\r\nAction: failed\r\nStatus: 5.7.708\r\n"
        "Diagnostic-Code: smtp;550 5.7.708 Service unavailable. Access denied, traffic not "
        "accepted from this IP.\r\n"
        "\r\n--NDR\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Return-Path: <{verp}>\r\nFrom: news@sender.example\r\nTo: <{rcpt}>\r\n"
        "Subject: hello\r\n\r\n--NDR--\r\n"
    ).encode()


def auto_reply(verp: str, rcpt: str) -> bytes:
    return (
        f"From: {rcpt}\r\nTo: {verp}\r\nSubject: Out of office: hello\r\n"
        "Auto-Submitted: auto-replied\r\nX-Autoreply: yes\r\n\r\n"
        "I am out of the office until Monday and will reply when I am back.\r\n"
    ).encode()


def delay_warning(verp: str, rcpt: str) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.example.org\r\n"
        f"To: {verp}\r\nSubject: Delayed Mail (still being retried)\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="D"\r\n'
        "\r\n--D\r\nContent-Type: text/plain\r\n\r\nThis is a delay warning only; the "
        "message is still being retried.\r\n"
        "--D\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\n\r\n"
        f"Final-Recipient: rfc822; {rcpt}\r\nAction: delayed\r\nStatus: 4.2.2\r\n"
        f"Diagnostic-Code: smtp; 452 4.2.2 <{rcpt}>: mailbox full\r\n"
        f"--D\r\nContent-Type: text/rfc822-headers\r\n\r\nReturn-Path: <{verp}>\r\n"
        "From: news@sender.example\r\n--D--\r\n"
    ).encode()


def feedback(verp: str, rcpt: str, feedback_type: str) -> bytes:
    return (
        f"From: feedback@fbl.example.org\r\nTo: {verp}\r\nSubject: complaint\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\r\n'
        "\r\n--F\r\nContent-Type: text/plain\r\n\r\nA report from a recipient.\r\n"
        "--F\r\nContent-Type: message/feedback-report\r\n\r\n"
        f"Feedback-Type: {feedback_type}\r\nUser-Agent: FBL/1.0\r\nVersion: 1\r\n"
        f"Original-Rcpt-To: <{rcpt}>\r\n\r\n"
        "--F\r\nContent-Type: message/rfc822\r\n\r\n"
        f"Return-Path: <{verp}>\r\nFrom: news@sender.example\r\nTo: {rcpt}\r\n"
        "Subject: hello\r\n\r\nbody\r\n--F--\r\n"
    ).encode()


def report_events(settings: Settings, offsets: dict[int, int], ids: set[str], done: Any) -> list:
    reader = StatusReader(settings, start_offsets=offsets, message_ids=ids)
    try:
        events = reader.poll_until(done, timeout=60)
    finally:
        reader.close()
    return [e for e in events if e.attempt == 1000]


def test_real_world_bounces_to_a_signed_return_path_and_their_forgeries(
    running_mta: Settings, redis_client: Any, sink: SinkServer
) -> None:
    sent = deliver(redis_client, sink, ["team-rwa", "team-rwb"])
    verp_a = return_path(sink, sent["team-rwa"].message_id)
    verp_b = return_path(sink, sent["team-rwb"].message_id)
    before = {r: forged(r) for r in ("bad_token", "unknown_recipient")}
    offsets = status_offsets(running_mta)

    # Attacks first: none may change anything.
    local, _, domain = verp_b.rpartition("@")
    tampered = f"{local[:-1]}{'a' if local[-1] != 'a' else 'b'}@{domain}"
    code, text = send(running_mta, tampered, exim(tampered, RCPT))
    assert code == 550 and b"token invalid" in text
    # The tampered token inside a report mailed to the plain bounce address.
    code, text = send(running_mta, PLAIN, exim(tampered, RCPT, sent["team-rwb"].message_id))
    assert code == 550 and b"not one we signed" in text, text
    # Team A's genuine return path, naming team B's message and a recipient A never had.
    other = exim(verp_a, "someone-else@example.org", sent["team-rwb"].message_id)
    code, text = send(running_mta, verp_a, other)
    assert code == 550 and b"never sent to the reported recipient" in text
    assert forged("bad_token") == before["bad_token"] + 2
    assert forged("unknown_recipient") == before["unknown_recipient"] + 1
    for team in sent:
        assert redis_client.scard(RedisKeys.suppression(team)) == 0

    # The genuine Exim bounce: exactly one bounced event, reason user_unknown, suppressed.
    code, text = send(running_mta, verp_a, exim(verp_a, RCPT))
    assert code == 250 and b"1 report items recorded" in text
    # An Office 365 block NDR about team B's mail: about us, never suppresses.
    code, text = send(running_mta, verp_b, office365(verp_b, RCPT))
    assert code == 250 and b"1 report items recorded" in text
    ids = {m.message_id for m in sent.values()}
    events = report_events(
        running_mta, offsets, ids, lambda ev: len([e for e in ev if e.attempt == 1000]) >= 2
    )
    found = sorted(
        (e.team_id, e.status.value, e.bounce_reason, e.bounce_action, e.bounce_class.value)
        for e in events
    )
    assert found[0] == ("team-rwa", "bounced", "user_unknown", "suppress", "hard")
    team, status, reason, action, _cls = found[1]
    assert (team, status, action) == ("team-rwb", "bounced", "fix_our_side")
    assert reason in ("blocked", "bad_reputation")
    assert len(found) == 2
    assert redis_client.smembers(RedisKeys.suppression("team-rwa")) == {RCPT.encode()}
    assert redis_client.scard(RedisKeys.suppression("team-rwb")) == 0


def test_auto_replies_and_delay_warnings_never_suppress(
    running_mta: Settings, redis_client: Any, sink: SinkServer
) -> None:
    sent = deliver(redis_client, sink, ["team-rwc"])
    verp = return_path(sink, sent["team-rwc"].message_id)
    offsets = status_offsets(running_mta)

    code, text = send(running_mta, verp, auto_reply(verp, RCPT))
    assert code == 250 and b"not a bounce" in text
    code, text = send(running_mta, verp, delay_warning(verp, RCPT))
    assert code == 250 and b"1 report items recorded" in text
    events = report_events(running_mta, offsets, {sent["team-rwc"].message_id}, lambda ev: bool(ev))
    assert [(e.status.value, e.bounce_action) for e in events] == [("deferred", "retry")]
    assert redis_client.scard(RedisKeys.suppression("team-rwc")) == 0
    assert not redis_client.exists(RedisKeys.soft_bounces("team-rwc", RCPT))


def test_a_complaint_suppresses_for_that_team_only_and_not_spam_lifts_it(
    running_mta: Settings, redis_client: Any, sink: SinkServer
) -> None:
    sent = deliver(redis_client, sink, ["team-rwd", "team-rwe"])
    verp_d = return_path(sink, sent["team-rwd"].message_id)
    verp_e = return_path(sink, sent["team-rwe"].message_id)
    redis_client.sadd(RedisKeys.suppression("team-rwe"), "own-choice@example.org")

    code, text = send(running_mta, verp_d, feedback(verp_d, RCPT, "abuse"))
    assert code == 250 and b"1 report items recorded" in text
    assert redis_client.smembers(RedisKeys.suppression("team-rwd")) == {RCPT.encode()}
    assert redis_client.smembers(RedisKeys.suppression("team-rwe")) == {b"own-choice@example.org"}

    # Not-spam about team E's message lifts nothing of team D's, and team E's own
    # suppression (made by the team, not by a report) stays.
    code, text = send(running_mta, verp_e, feedback(verp_e, RCPT, "not-spam"))
    assert code == 250
    assert redis_client.smembers(RedisKeys.suppression("team-rwd")) == {RCPT.encode()}
    assert redis_client.smembers(RedisKeys.suppression("team-rwe")) == {b"own-choice@example.org"}
    # A forged not-spam (tampered token) changes nothing.
    local, _, domain = verp_d.rpartition("@")
    tampered = f"{local[:-1]}{'a' if local[-1] != 'a' else 'b'}@{domain}"
    code, _ = send(running_mta, PLAIN, feedback(tampered, RCPT, "not-spam"))
    assert code == 550
    assert redis_client.smembers(RedisKeys.suppression("team-rwd")) == {RCPT.encode()}
    # The genuine not-spam about team D's delivery lifts team D's complaint suppression.
    code, text = send(running_mta, verp_d, feedback(verp_d, RCPT, "not-spam"))
    assert code == 250 and b"1 report items recorded" in text
    assert redis_client.scard(RedisKeys.suppression("team-rwd")) == 0
    assert not redis_client.hexists(RedisKeys.suppression_reasons("team-rwd"), RCPT)


def test_a_report_quoting_only_the_clients_message_id_is_attributed(
    running_mta: Settings, redis_client: Any, sink: SinkServer
) -> None:
    """The client kept its own Message-ID (the platform id rode in X-Kibamail-Message-ID);
    a report that quotes only the former is mapped back, for that team's recipient only."""
    from kibamail.intake import submit

    from .helpers import make_message, wait_until

    team, client_id = "team-rwf", "client-chosen-77@app.example"
    redis_client.set(RedisKeys.domain_ready(team, "sender.example"), "1")
    msg = make_message([RCPT], team=team)
    data = msg.data.replace(
        f"Message-ID: <{msg.message_id}>".encode(),
        f"Message-ID: <{client_id}>\r\nX-Kibamail-Message-ID: <{msg.message_id}>".encode(),
    )
    submit(redis_client, msg.model_copy(update={"data": data}))
    assert wait_until(lambda: redis_client.exists(RedisKeys.sent_recipients(team, msg.message_id)))
    assert redis_client.smembers(RedisKeys.client_message_id(client_id)) == {
        msg.message_id.encode()
    }

    def quoting(rcpt: str) -> bytes:
        return (
            "From: MAILER-DAEMON@mx.example.org\r\nSubject: Undelivered Mail\r\n"
            "MIME-Version: 1.0\r\n"
            'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
            "\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\n"
            "Reporting-MTA: dns; mx.example.org\r\n\r\n"
            f"Final-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
            f"Diagnostic-Code: smtp; 550 5.1.1 <{rcpt}>: User unknown\r\n"
            "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
            f"From: news@sender.example\r\nMessage-ID: <{client_id}>\r\n--B--\r\n"
        ).encode()

    code, text = send(running_mta, PLAIN, quoting("stranger@example.org"))
    assert code == 550 and b"never sent to the reported recipient" in text
    assert redis_client.scard(RedisKeys.suppression(team)) == 0
    code, text = send(running_mta, PLAIN, quoting(RCPT))
    assert code == 250 and b"1 report items recorded" in text
    assert redis_client.smembers(RedisKeys.suppression(team)) == {RCPT.encode()}
