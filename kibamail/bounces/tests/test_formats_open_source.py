"""The open-source MTAs' plain-text formats: each claims its own reports, none claims others'.

Every fixture of these families is read by the format that wrote it (the first of
OPEN_SOURCE_FORMATS to answer, as ``parse_message`` tries them) with exactly the labelled
recipients; every format run over every other family's fixtures either declines or, when
the message really is in its wording (an Exim clone, a Postfix DSN), finds the labelled
recipients and no others; nothing is found in complaints, auto-replies or non-reports.
"""

from __future__ import annotations

import pytest

from kibamail.bounces.formats.open_source import OPEN_SOURCE_FORMATS
from kibamail.bounces.mail import read_mail
from kibamail.bounces.parse import parse_message

from .corpus import Fixture, load_fixtures

pytestmark = pytest.mark.unit

FAMILIES = {
    "qmail": "qmail",
    "exim": "exim",
    "gmx": "gmx",
    "smail": "smail",
    "sendmail": "sendmail",
    "postfix": "postfix",
    "opensmtpd": "opensmtpd",
    "courier": "courier",
    "domino": "domino",
    "james": "james",
    "mailmarshal": "mailmarshal",
    "fml": "fml",
    "appliances": "",
    "unknown_mtas": "",
}
# Fixtures read by a format other than their family's namesake (clones, one module's
# second format); in ``appliances`` and ``unknown_mtas`` the file name says which.
OVERRIDES = {
    "exim/mailru_spam": "mailru",
    "exim/mxlogic_user_unknown": "mxlogic",
    "domino/notes_failure_reasons": "notes",
}
NOT_REPORTS = ("arf", "autoreply", "none")

ALL = load_fixtures()
OURS = [f for f in ALL if f.family in FAMILIES]
OTHERS = [f for f in ALL if f.family not in FAMILIES]


def expected_parser(fixture: Fixture) -> str:
    key = f"{fixture.family}/{fixture.name}"
    if key in OVERRIDES:
        return OVERRIDES[key]
    if FAMILIES[fixture.family]:
        return FAMILIES[fixture.family]
    prefix = fixture.name.split("_", 1)[0]
    return "messagingserver" if prefix == "messaging" else prefix


def labelled(fixture: Fixture) -> list[str]:
    return sorted(r["recipient"].lower() for r in fixture.label["recipients"])


def ids(fixtures: list[Fixture]) -> list[str]:
    return [f"{f.family}/{f.name}" for f in fixtures]


def test_at_least_60_fixtures_across_the_formats() -> None:
    assert len(OURS) >= 60
    names = {expected_parser(f) for f in OURS}
    assert {p.name for p in OPEN_SOURCE_FORMATS} <= names


@pytest.mark.parametrize("fixture", OURS, ids=ids(OURS))
def test_fixture_is_claimed_by_its_own_format(fixture: Fixture) -> None:
    mail = read_mail(fixture.data)
    claimed = [(p.name, found) for p in OPEN_SOURCE_FORMATS if (found := p(mail))]
    assert claimed, "no format recognised it"
    name, found = claimed[0]
    assert name == expected_parser(fixture)
    assert sorted(f.recipient.lower() for f in found) == labelled(fixture)
    for failure in found:
        assert failure.diagnostic or failure.reason_hint or failure.status, failure


@pytest.mark.parametrize("fixture", OURS + OTHERS, ids=ids(OURS + OTHERS))
def test_no_format_claims_what_it_did_not_write(fixture: Fixture) -> None:
    mail = read_mail(fixture.data)
    own = expected_parser(fixture) if fixture.family in FAMILIES else None
    for parser in OPEN_SOURCE_FORMATS:
        if parser.name == own:
            continue
        found = parser(mail)
        if not found:
            continue
        assert fixture.family not in NOT_REPORTS, f"{parser.name} found {found}"
        got = sorted(f.recipient.lower() for f in found)
        assert got == labelled(fixture), f"{parser.name} read {got}"


@pytest.mark.parametrize("fixture", OURS, ids=ids(OURS))
def test_fixture_through_parse_message(fixture: Fixture) -> None:
    """The registry order holds with the providers' formats in front of ours."""
    report = parse_message(fixture.data)
    assert report.kind.value == fixture.label["kind"]
    assert report.source_format == expected_parser(fixture)
    got = {f.recipient.lower(): f for f in report.findings}
    assert sorted(got) == labelled(fixture)
    for wanted in fixture.label["recipients"]:
        finding = got[wanted["recipient"].lower()]
        assert finding.kind.value == wanted["kind"]
        if wanted["status"]:
            assert finding.status == wanted["status"]
