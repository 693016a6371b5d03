"""Auto-replies and challenge-response mails never suppress; bounces are not auto-replies."""

from __future__ import annotations

import pytest

from kibamail.bounces.autoreply import auto_reply_rule
from kibamail.bounces.mail import read_mail
from kibamail.bounces.model import Kind
from kibamail.bounces.parse import parse_message

from .corpus import FIXTURES

pytestmark = pytest.mark.unit

AUTOREPLY = sorted(p.stem for p in (FIXTURES / "autoreply").glob("*.eml"))


@pytest.mark.parametrize("name", AUTOREPLY)
def test_every_auto_reply_fixture_is_an_auto_reply_that_keeps_the_address(name: str) -> None:
    report = parse_message((FIXTURES / "autoreply" / f"{name}.eml").read_bytes())
    assert report.kind is Kind.AUTO_REPLY
    (finding,) = report.findings
    assert finding.recipient and not finding.suppress


def test_challenge_response_systems_are_named() -> None:
    for name, rule in (
        ("tmda_challenge", "challenge:x-delivery-agent"),
        ("boxbe_guest_list", "challenge:x-boxbe-mail-id"),
        ("spamarrest_verify", "challenge:x-spamarrest-challenge"),
        ("generic_please_confirm", "challenge:text"),
    ):
        mail = read_mail((FIXTURES / "autoreply" / f"{name}.eml").read_bytes())
        assert auto_reply_rule(mail) == rule, name


def test_a_bounce_with_auto_submitted_is_still_a_bounce() -> None:
    # RFC 3464 bounces carry Auto-Submitted: auto-replied; the daemon sender decides.
    data = (FIXTURES / "rfc3464" / "postfix_unknown.eml").read_bytes()
    data = data.replace(b"MIME-Version: 1.0", b"Auto-Submitted: auto-replied\nMIME-Version: 1.0", 1)
    assert parse_message(data).kind is Kind.BOUNCE


def test_newsletter_with_a_holiday_subject_is_not_an_auto_reply() -> None:
    mail = read_mail((FIXTURES / "none" / "newsletter_vacation_deals.eml").read_bytes())
    assert auto_reply_rule(mail) == ""
