"""Complaints: every feedback type, redacted recipients, the non-standard loops."""

from __future__ import annotations

import pytest

from kibamail.bounces.model import Action, Kind, Reason, Report
from kibamail.bounces.parse import parse_message

from .corpus import FIXTURES
from .fixture_kit import token

pytestmark = pytest.mark.unit


def _report(name: str) -> Report:
    return parse_message((FIXTURES / "arf" / f"{name}.eml").read_bytes())


@pytest.mark.parametrize("kind", ["abuse", "fraud", "virus", "other"])
def test_complaint_types_suppress(kind: str) -> None:
    report = _report(f"feedback_{kind}")
    assert report.kind is Kind.COMPLAINT
    (finding,) = report.findings
    assert (finding.reason, finding.action, finding.feedback_type) == (
        Reason.COMPLAINT,
        Action.SUPPRESS,
        kind,
    )


def test_not_spam_unsuppresses_and_auth_failure_is_about_us() -> None:
    (not_spam,) = _report("feedback_not_spam").findings
    assert (not_spam.kind, not_spam.reason, not_spam.action) == (
        Kind.COMPLAINT,
        Reason.NOT_SPAM,
        Action.RETRY,
    )
    (auth,) = _report("feedback_auth_failure").findings
    assert (auth.reason, auth.action) == (Reason.AUTH_FAILURE, Action.FIX_OUR_SIDE)


def test_redacted_recipient_attributed_by_return_path_token() -> None:
    (finding,) = _report("redacted_recipient_token").findings
    assert finding.recipient == ""
    assert finding.return_path == token("msg-0407@shop.example.com", "carla@example.org")
    assert finding.suppress


def test_redacted_recipient_without_token_attributed_by_platform_id() -> None:
    (finding,) = _report("redacted_recipient_platform_id").findings
    assert (finding.recipient, finding.return_path) == ("", "")
    assert finding.platform_message_id == "kb_0408"
    assert finding.message_id == "msg-0408@shop.example.com"


@pytest.mark.parametrize(
    ("name", "recipient", "source"),
    [
        ("yahoo_cfl", "dana@example.net", "arf"),
        ("microsoft_jmrp_arf", "erin@example.com", "jmrp"),
        ("microsoft_jmrp_legacy", "hana@example.com", "jmrp"),
        ("aol_legacy_tos", "ivan@example.com", "aol"),
        ("comcast_removal_recipient", "finn@example.org", "arf"),
        ("mailru_fbl", "gleb@example.ru", "arf"),
        ("amazon_ses_complaint", "jill@example.net", "loop"),
        ("plain_text_abuse_report", "kim@example.org", "loop"),
    ],
)
def test_feedback_loops(name: str, recipient: str, source: str) -> None:
    report = _report(name)
    assert report.kind is Kind.COMPLAINT
    assert [f.recipient for f in report.findings] == [recipient]
    assert report.source_format == source
    assert report.findings[0].suppress


def test_a_mail_about_abuse_is_not_a_complaint() -> None:
    text = (
        "From: Lee <lee@example.org>\nTo: support@shop.example.com\nSubject: abuse report?\n\n"
        "Hi, where do I send an abuse report about a phishing site?\n"
    )
    assert parse_message(text.encode()).kind is Kind.NONE
