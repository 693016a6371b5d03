"""parse_message: never raises, attribution order, bounces of bounces, forwards, decoding."""

from __future__ import annotations

import random

import pytest

from kibamail.bounces.mail import html_to_text, read_mail
from kibamail.bounces.model import Kind, Reason
from kibamail.bounces.parse import parse_message
from kibamail.bounces.rfc3464 import address_in
from kibamail.report_tokens import verify_return_path

from .corpus import FIXTURES
from .fixture_kit import SECRET, Rcpt, dsn, original, token

pytestmark = pytest.mark.unit


def _data(family: str, name: str) -> bytes:
    return (FIXTURES / family / f"{name}.eml").read_bytes()


def test_malformed_input_never_raises() -> None:
    rng = random.Random(13)
    samples = [b"", b"\x00\xff" * 50, b"Content-Type: multipart/report; boundary=x\n\n--x\n"]
    real = _data("rfc3464", "multi_three_recipients")
    for _ in range(200):  # cut and corrupted real reports
        cut = real[: rng.randrange(len(real))]
        flip = bytearray(real)
        for _ in range(20):
            flip[rng.randrange(len(flip))] = rng.randrange(256)
        samples += [cut, bytes(flip)]
    for data in samples:
        report = parse_message(data)
        assert report.kind in Kind


def test_attribution_prefers_the_signed_return_path_then_platform_id_then_message_id() -> None:
    finding = parse_message(_data("rfc3464", "postfix_unknown")).findings[0]
    assert finding.return_path == token("msg-0101@shop.example.com", finding.recipient)
    assert verify_return_path(SECRET, finding.return_path) is not None
    assert finding.platform_message_id == "kb_0101"
    assert finding.message_id == "msg-0101@shop.example.com"


def test_token_found_in_the_quoted_return_path_when_the_report_went_elsewhere() -> None:
    text = dsn([Rcpt("ann@example.org")], n=901, to="postmaster@shop.example.com")
    finding = parse_message(text.encode()).findings[0]
    assert finding.return_path == token("msg-0901@shop.example.com", "ann@example.org")


def test_forged_token_is_found_but_does_not_verify() -> None:
    forged = "bounces+aaaaaaaaaaaaaaaa.bbbbbbbbbb"
    text = dsn([Rcpt("ann@example.org")], n=902, to=f"{forged}@bounces.shop.example.com")
    finding = parse_message(text.encode()).findings[0]
    assert finding.return_path == forged
    assert verify_return_path(SECRET, finding.return_path) is None


def test_truncated_original_keeps_what_survived() -> None:
    report = parse_message(_data("rfc3464", "truncated_original"))
    assert [f.recipient for f in report.findings] == ["ann@example.org"]
    assert report.findings[0].return_path.startswith("bounces+")


def test_bounce_of_a_bounce_reports_only_the_outer_recipient() -> None:
    for name in ("bounce_of_bounce_dsn", "bounce_of_plain_bounce"):
        report = parse_message(_data("forwarded", name))
        assert len(report.findings) == 1, name
        assert report.findings[0].recipient in ("wes@example.net", "xena@example.org")


def test_forwarded_bounces_are_unwrapped_once() -> None:
    for name in ("gmail_inline_forward_postfix", "apple_begin_forwarded", "attached_dsn_forward"):
        report = parse_message(_data("forwarded", name))
        assert report.kind is Kind.BOUNCE, name
        assert report.source_format.startswith("forwarded:"), name
        assert report.findings[0].reason is Reason.USER_UNKNOWN


def test_a_forward_of_ordinary_mail_is_not_a_report() -> None:
    text = (
        "From: Rita <rita@shop.example.com>\nSubject: Fwd: lunch\n\nsee below\n\n"
        "---------- Forwarded message ---------\nFrom: Sam <sam@example.org>\n"
        "Subject: lunch\n\nNoon at the usual place?\n"
    )
    assert parse_message(text.encode()).kind is Kind.NONE


def test_global_dsn_utf8_recipient_and_encoded_status_parts() -> None:
    report = parse_message(_data("rfc3464", "global_dsn_utf8"))
    assert [f.recipient for f in report.findings] == ["josé@example.org"]
    for name in ("status_base64", "status_quoted_printable", "status_as_text_plain"):
        found = parse_message(_data("rfc3464", name)).findings
        assert {f.recipient for f in found} == {"ann@example.org", "bob@example.net"}, name


def test_delayed_and_delivered_never_suppress() -> None:
    for name in ("postfix_delayed", "gmail_delay", "dsn_delivered", "mixed_delivered_delayed"):
        report = parse_message(_data("notices", name))
        assert report.findings and not any(f.suppress for f in report.findings), name
        assert report.kind in (Kind.DELAYED, Kind.DELIVERED), name


def test_html_to_text_keeps_addresses_in_angle_brackets() -> None:
    text = html_to_text(
        '<p>Failed: <b><a@example.org></b> <a href="mailto:x@example.org">x</a></p>'
    )
    assert "<a@example.org>" in text
    assert "href" not in text


def test_address_in_tolerates_odd_dsn_spellings() -> None:
    assert address_in("RFC822 ;  <Ann@Example.org>") == "ann@example.org"
    assert address_in("rfc822;<bob@example.net>.") == "bob@example.net"
    assert address_in("rfc822; cy") == ""


def test_read_mail_parts_stop_at_the_quoted_original() -> None:
    inner = dsn([Rcpt("victor@example.com")], n=903)
    outer = dsn([Rcpt("wes@example.net")], n=904, original_text=inner)
    mail = read_mail(outer.encode())
    status_parts = [p for p in mail.parts if p.get_content_type() == "message/delivery-status"]
    assert len(status_parts) == 1
    assert "victor@example.com" not in mail.text


def test_plain_bounce_without_any_format_uses_the_generic_reader() -> None:
    text = (
        "From: MAILER-DAEMON@gw.example.net\nTo: news@shop.example.com\n"
        "Subject: Returned mail\n\nYour mail could not be delivered.\n\n"
        "  zed@example.org\n    550 mailbox unavailable: no such user here\n\n"
        "--- original message follows ---\n" + original("zed@example.org", n=905)
    )
    report = parse_message(text.encode())
    assert [f.recipient for f in report.findings] == ["zed@example.org"]
    assert report.findings[0].return_path.startswith("bounces+")


def test_generic_reader_ignores_our_own_addresses_and_reads_unknown_phrasing() -> None:
    text = (
        "From: Mail Administrator <Postmaster@gw.example.net>\nTo: news@shop.example.com\n"
        "Subject: Mail System Error - Returned Mail\n\n"
        "This Message was undeliverable due to the following reason:\n\n"
        "<ann@example.org> is not a valid mailbox\n\n"
        "Please reply to Postmaster@gw.example.net if you feel this message to be in error.\n"
        "Sent by news@shop.example.com.\n"
    )
    report = parse_message(text.encode())
    assert [f.recipient for f in report.findings] == ["ann@example.org"]
    assert report.findings[0].reason is Reason.USER_UNKNOWN
