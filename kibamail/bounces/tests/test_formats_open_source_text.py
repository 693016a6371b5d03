"""The shared text helpers and the edge cases real plain-text bounces bring.

Wrapped and quoted lines, CRLF, cut-off originals, codes next to IP addresses, and
ordinary mail that quotes a bounce's wording: each is read as a person would.
"""

from __future__ import annotations

import pytest

from kibamail.bounces.formats.exim import EXIM
from kibamail.bounces.formats.open_source import OPEN_SOURCE_FORMATS
from kibamail.bounces.formats.postfix import POSTFIX
from kibamail.bounces.formats.qmail import QMAIL
from kibamail.bounces.formats.sendmail import SENDMAIL
from kibamail.bounces.formats.text_helpers import (
    enhanced_status,
    find_address,
    normalize,
    remote_host,
    smtp_code,
)
from kibamail.bounces.mail import read_mail
from kibamail.bounces.model import Reason

pytestmark = pytest.mark.unit


def message(sender: str, subject: str, body: str, headers: str = "") -> bytes:
    return (
        f"From: {sender}\nTo: news@shop.example.com\nSubject: {subject}\n{headers}"
        f"Content-Type: text/plain; charset=utf-8\n\n{body}"
    ).encode()


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("Sorry, no mailbox here by that name. (#5.1.1)", "5.1.1"),
        ("550-5.1.1 The email account that you tried to reach does not exist", "5.1.1"),
        ("host mx.example.net[192.0.2.1] said: 550 5.7.26 DMARC", "5.7.26"),
        ("connect to mx.example.net[192.0.2.1]:25: Connection timed out", ""),
        ("version 4.4.1.2 of the software", ""),
    ],
)
def test_enhanced_status_reads_codes_not_addresses(text: str, status: str) -> None:
    assert enhanced_status(text) == status


def test_reply_code_and_remote_host() -> None:
    text = "host mx.example.net [192.0.2.1]: 550 5.1.1 <a@example.net>: User unknown"
    assert smtp_code(text) == 550
    assert remote_host(text) == "mx.example.net"
    assert smtp_code("Giving up on 192.0.2.153.") == 0
    assert remote_host("Giving up on 192.0.2.153.") == "192.0.2.153"


def test_find_address_in_brackets_and_international() -> None:
    assert find_address("<Amy.Doe@Example.NET>...") == "Amy.Doe@Example.NET"
    assert find_address("rfc822; josé@example.org") == "josé@example.org"


def test_normalize_removes_quoting_but_keeps_a_transcript() -> None:
    quoted = "> <<< 550 5.1.1 User unknown\r\n> >>> RCPT To:<a@example.org>\r\n> text\r\n"
    assert normalize(quoted).split("\n")[:3] == [
        "<<< 550 5.1.1 User unknown",
        ">>> RCPT To:<a@example.org>",
        "text",
    ]
    transcript = ">>> RCPT To:<a@example.org>\n<<< 550 User unknown\nplain"
    assert normalize(transcript) == transcript


def test_qmail_without_its_original_and_with_crlf() -> None:
    body = (
        "Hi. This is the qmail-send program at mail.example.org.\r\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\r\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\r\n\r\n"
        "<zed@example.net>:\r\nSorry, no mailbox here by that name. (#5.1.1)\r\n"
    )
    found = QMAIL(read_mail(message("MAILER-DAEMON@mail.example.org", "failure notice", body)))
    assert found is not None and len(found) == 1
    assert (found[0].recipient, found[0].status, found[0].reason_hint) == (
        "zed@example.net",
        "5.1.1",
        Reason.USER_UNKNOWN,
    )


def test_postfix_wrapped_reason_is_one_diagnostic() -> None:
    body = (
        "This is the mail system at host mail.example.org.\n\n"
        "<ty@example.net>: host mx.example.net[192.0.2.9] said: 550 5.7.1 Message\n"
        "    rejected as spam (in reply to end of DATA command)\n"
    )
    found = POSTFIX(read_mail(message("MAILER-DAEMON@mail.example.org", "Undelivered Mail", body)))
    assert found is not None
    assert found[0].diagnostic.endswith("rejected as spam (in reply to end of DATA command)")
    assert (found[0].smtp_code, found[0].status, found[0].remote_mta) == (
        550,
        "5.7.1",
        "mx.example.net",
    )


def test_sendmail_gave_up_is_expired_and_warning_is_delayed() -> None:
    transcript = (
        "   ----- Transcript of session follows -----\n"
        "<ux@example.com>... Deferred: Connection timed out with mx.example.com.\n"
    )
    gave_up = SENDMAIL(
        read_mail(
            message(
                "MAILER-DAEMON@relay.example.org",
                "Returned mail: Cannot send message for 5 days",
                transcript + "Message could not be delivered for 5 days\n",
            )
        )
    )
    warning = SENDMAIL(
        read_mail(
            message(
                "MAILER-DAEMON@relay.example.org",
                "Warning: could not send message for past 4 hours",
                transcript + "Warning: message still undelivered after 4 hours\n",
            )
        )
    )
    assert gave_up is not None and gave_up[0].reason_hint is Reason.EXPIRED
    assert gave_up[0].action == "failed"
    assert warning is not None and warning[0].action == "delayed"


def test_exim_frozen_and_unknown_wording_fall_back_to_the_header() -> None:
    body = "Zustellung fehlgeschlagen.\n\n  vi@example.de\n    550 5.1.1 unbekannt\n"
    found = EXIM(
        read_mail(
            message(
                "Mail Delivery System <Mailer-Daemon@mail.example.de>",
                "Unzustellbar",
                body,
                "X-Failed-Recipients: vi@example.de\n",
            )
        )
    )
    assert found is not None and found[0].recipient == "vi@example.de"
    assert found[0].status == "5.1.1"


def test_a_person_quoting_bounce_wording_is_not_a_bounce() -> None:
    body = (
        "Hi team,\n\nI got a mail saying 'This message was created automatically by mail "
        "delivery software' and 'This is the mail system at host mail.example.org.'\n"
        "and '   ----- Transcript of session follows -----' -- what does it mean?\n"
        "Ask <helpdesk@example.org>.\n"
    )
    mail = read_mail(message("Jane Roe <jane@example.org>", "Re: odd email", body))
    for parser in OPEN_SOURCE_FORMATS:
        assert not parser(mail), parser.name


def test_postfix_without_its_delivery_report_names_the_original_recipient() -> None:
    raw = (
        b"From: MAILER-DAEMON@mail.example.org\nSubject: Undelivered Mail Returned to Sender\n"
        b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\n"
        b"Content-Type: text/plain\n\nThis is the mail system at host mail.example.org.\n\n"
        b"                   The mail system\n\n\t--- Delivery report unavailable ---\n--b\n"
        b"Content-Type: message/rfc822\n\nFrom: news@shop.example.com\nTo: <lost@example.net>\n"
        b"Message-ID: <m1@shop.example.com>\nSubject: hi\n\nbody\n--b--\n"
    )
    found = POSTFIX(read_mail(raw))
    assert found is not None and [f.recipient for f in found] == ["lost@example.net"]
