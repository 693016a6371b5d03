"""Provider formats: each claims its own reports, reads them right, and claims nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kibamail.bounces.formats.base import Failure, FormatParser
from kibamail.bounces.formats.providers import PROVIDER_FORMATS
from kibamail.bounces.mail import Mail, read_mail
from kibamail.bounces.model import Reason

FIXTURES = Path(__file__).parent / "fixtures"
# Fixture family -> the provider formats allowed to claim its reports.
FAMILIES: dict[str, set[str]] = {
    "exchange": {"exchange2003", "exchange2007"},
    "office365": {"office365", "outlook_com", "exchange2007"},
    "google": {"gmail", "google_groups"},
    "yahoo": {"yahoo", "aol"},
    "amazonses": {"amazonses", "ses_receiving"},
    "gateways": {"mimecast", "messagelabs", "barracuda"},
    "mailboxes": {"zoho", "yandex", "icloud", "sendgrid"},
    "carriers": {"kddi", "ezweb", "verizon", "biglobe"},
}
OURS = sorted(p for family in FAMILIES for p in sorted((FIXTURES / family).glob("*.eml")))
OTHERS = sorted(p for p in FIXTURES.glob("*/*.eml") if p.parent.name not in FAMILIES)


def label(path: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads(path.with_name(path.stem + ".expected.json").read_text())
    return data


def first_claim(mail: Mail) -> tuple[str, list[Failure]]:
    for parser in PROVIDER_FORMATS:
        found = parser(mail)
        if found is not None:
            return parser.name, found
    return "", []


def test_enough_fixtures_for_every_family() -> None:
    assert len(OURS) >= 60
    for family in FAMILIES:
        assert len(list((FIXTURES / family).glob("*.eml"))) >= 4, family


@pytest.mark.parametrize("path", OURS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_claimed_by_its_family_with_labelled_recipients(path: Path) -> None:
    name, found = first_claim(read_mail(path.read_bytes()))
    assert name in FAMILIES[path.parent.name]
    rows = label(path)["recipients"]
    assert isinstance(rows, list)
    assert [f.recipient for f in found] == [r["recipient"] for r in rows]
    assert [f.status for f in found] == [r["status"] for r in rows]
    delayed = [r["kind"] == "delayed" for r in rows]
    assert [f.action == "delayed" for f in found] == delayed


def agrees(found: list[Failure], path: Path) -> bool:
    rows = label(path)["recipients"]
    assert isinstance(rows, list)
    expected = [(r["recipient"], r["status"], r["kind"] == "delayed") for r in rows]
    return [(f.recipient, f.status, f.action == "delayed") for f in found] == expected


@pytest.mark.parametrize("parser", PROVIDER_FORMATS, ids=lambda p: p.name)
def test_no_false_claims(parser: FormatParser) -> None:
    """Every provider format against every fixture not of its family, ours and the team's.

    Among our families a claim is false. The team's fixtures include real providers'
    DSNs (Gmail, SES, Office 365 in the rfc3464 family): claiming one is right only when
    the answer is exactly the labelled one.
    """
    ours = [p for p in OURS if parser.name not in FAMILIES[p.parent.name]]
    false = [
        f"{p.parent.name}/{p.name}" for p in ours if parser(read_mail(p.read_bytes())) is not None
    ]
    for path in OTHERS:
        found = parser(read_mail(path.read_bytes()))
        if found is not None and not agrees(found, path):
            false.append(f"{path.parent.name}/{path.name}")
    assert false == []


def read(family: str, name: str) -> tuple[str, list[Failure]]:
    return first_claim(read_mail((FIXTURES / family / f"{name}.eml").read_bytes()))


def test_exchange2003_codes_and_angle_replies() -> None:
    name, found = read("exchange", "e2003_msexch_two_unknown")
    assert name == "exchange2003"
    assert [f.reason_hint for f in found] == [Reason.USER_UNKNOWN, Reason.USER_UNKNOWN]
    assert "Unknown Recipient" in found[0].diagnostic
    _, found = read("exchange", "e2003_full_and_expired_cp1252")
    assert (found[0].smtp_code, found[0].remote_mta) == (552, "mx.example.com")
    assert (found[1].status, found[1].remote_mta) == ("4.4.7", "exch02.example.org")


def test_exchange2007_localized_and_latest_attempt_first() -> None:
    for fixture in ("e2007_french_latin1", "e2007_japanese_iso2022jp", "e2007_recipnotfound"):
        name, found = read("exchange", fixture)
        assert name == "exchange2007"
        assert found[0].reason_hint is Reason.USER_UNKNOWN
        assert found[0].diagnostic.startswith("550 5.1.1 RESOLVER.ADR.RecipNotFound")
    _, found = read("exchange", "e2007_queue_expired")
    assert found[0].diagnostic == "550 4.4.7 QUEUE.Expired; message expired"
    assert (found[0].reason_hint, found[0].remote_mta) == (Reason.EXPIRED, "mx.example.com")
    _, found = read("exchange", "e2007_german_two_reasons")
    assert (
        found[1].diagnostic == "552 5.2.2 mailbox full"
    )  # German wording around the quote dropped


def test_office365_layouts_and_edge_blocking() -> None:
    name, found = read("office365", "o365_new_layout_html_only")
    assert name == "office365"
    assert found[0].diagnostic.startswith("550 5.1.10 RESOLVER.ADR.RecipientNotFound")
    _, found = read("office365", "o365_edge_block_two_recipients")
    assert [f.reason_hint for f in found] == [Reason.USER_UNKNOWN] * 2
    assert found[0].remote_mta == "example-net.mail.protection.outlook.com"
    _, found = read("office365", "o365_recipient_not_found")
    assert found[0].remote_mta == "am0pr02mb1234.eurprd02.prod.outlook.com"
    name, found = read("office365", "outlook_com_mailbox_unavailable")
    assert (name, found[0].reason_hint) == ("outlook_com", Reason.USER_UNKNOWN)


def test_gmail_old_new_and_groups() -> None:
    _, found = read("google", "gmail_old_user_unknown")
    assert found[0].diagnostic == "550 5.1.1 <old.friend@example.org>... User Unknown"
    assert found[0].remote_mta == "mx.example.org"
    _, found = read("google", "gmail_old_dns_domain_not_found")
    assert found[0].reason_hint is Reason.HOST_UNKNOWN
    _, found = read("google", "gmail_address_not_found")
    assert found[0].remote_mta == "gmail-smtp-in.l.google.com"
    assert "does not exist" in found[0].diagnostic
    _, found = read("google", "workspace_send_mail_as")  # no DSN: the original's To
    assert found[0].recipient == "client@example.com"
    name, found = read("google", "google_groups_no_permission")
    assert (name, found[0].reason_hint) == ("google_groups", Reason.SENDER_REJECTED)


def test_yahoo_reply_on_next_line_and_command_dropped() -> None:
    _, found = read("yahoo", "yahoo_dd_and_full")
    assert found[0].reason_hint is Reason.USER_UNKNOWN
    assert found[1].diagnostic == "552 5.2.2 <full.box@example.net>... Mailbox Full"


def test_amazon_ses_quoted_status_and_json() -> None:
    _, found = read("amazonses", "ses_quoted_status_two_recipients")
    assert [f.status for f in found] == ["5.1.1", "5.1.1"]  # not the DSN's bare 5.1.0
    name, found = read("amazonses", "ses_sns_json_mailbox_full")
    assert (name, found[0].reason_hint, found[0].smtp_code) == (
        "amazonses",
        Reason.MAILBOX_FULL,
        452,
    )
    name, found = read("amazonses", "ses_receiving_mailbox_does_not_exist")
    assert (name, found[0].reason_hint) == ("ses_receiving", Reason.FILTERED)


def test_gateways_and_carriers_state_their_cause() -> None:
    _, found = read("gateways", "mimecast_two_mailbox_full")
    assert [f.smtp_code for f in found] == [552, 552]
    _, found = read("gateways", "messagelabs_auth_required")
    assert found[0].reason_hint is Reason.SECURITY_ERROR
    _, found = read("carriers", "kddi_spasign_filtered")
    assert found[0].reason_hint is Reason.FILTERED
    _, found = read("carriers", "ezweb_account_disabled")
    assert found[0].reason_hint is Reason.SUSPENDED
    _, found = read("mailboxes", "sendgrid_expired")
    assert (found[0].action, found[0].reason_hint) == ("failed", Reason.EXPIRED)
