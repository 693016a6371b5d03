"""DMARC reports reach a team only through its signed rua address, and are stored once per
team: ``dmarc+<team id>.<mac>@`` is derivable by the platform alone; a bare team id or a
wrong signature is refused at RCPT (550 5.7.1), counted, and nothing is stored."""

from __future__ import annotations

import smtplib
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from api.services.domains import dmarc_rua
from deliverability.parser import parse_bytes
from deliverability.storage import report_key
from kibamail.report_tokens import rua_tag, verify_rua_tag
from kibamail.settings import Settings
from mta.tests import conftest as mta_fixtures

# The in-process MTA and its test internet, from the MTA's own tests.
zone = mta_fixtures.zone
dns_server = mta_fixtures.dns_server
sink = mta_fixtures.sink
mta_settings = mta_fixtures.mta_settings
running_mta = mta_fixtures.running_mta

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SECRET = "test-secret"


def report_mail() -> bytes:
    raw = (FIXTURES / "email-source-with-zip.txt").read_bytes()
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # SMTP wants CRLF


def test_rua_tag_verifies_only_its_own_team() -> None:
    tag = rua_tag(SECRET, "team-a")
    assert tag.startswith("team-a.") and verify_rua_tag(SECRET, tag) == "team-a"
    assert verify_rua_tag(SECRET, tag.upper().replace("TEAM-A", "team-a")) == "team-a"
    assert verify_rua_tag(SECRET, "team-a") is None  # bare team id
    mac_b = rua_tag(SECRET, "team-b").rpartition(".")[2]
    assert verify_rua_tag(SECRET, f"team-a.{mac_b}") is None  # another team's signature
    assert verify_rua_tag("other-secret", tag) is None
    assert verify_rua_tag(SECRET, f"{tag}x") is None and verify_rua_tag(SECRET, ".") is None


def test_the_published_rua_address_carries_the_signed_tag() -> None:
    settings = Settings().model_copy(deep=True)
    settings.mta.report_token_secret = SECRET
    address = dmarc_rua(settings, "team-a")
    assert address == f"mailto:dmarc+{rua_tag(SECRET, 'team-a')}@{settings.mta.hostname}"


def test_report_key_is_per_team() -> None:
    (report,) = parse_bytes(report_mail()).reports
    assert report_key(report, "team-a") != report_key(report, "team-b")
    assert report_key(report, "team-a") == report_key(report, "team-a")


def _forged() -> float:
    value = REGISTRY.get_sample_value("kibamail_mta_forged_reports_total", {"reason": "rua_tag"})
    return value or 0.0


def _stored(clickhouse: Any, team: str) -> int:
    rows = clickhouse.query(
        "SELECT count() FROM raw_dmarc_reports FINAL WHERE team_id = %(team)s",
        parameters={"team": team},
    ).result_rows
    return int(rows[0][0])


@pytest.mark.integration
def test_bare_or_forged_rua_tags_are_refused_and_reports_dedup_per_team(
    running_mta: Settings, dmarc_tables: Any
) -> None:
    secret = running_mta.mta.report_token_secret
    domain = "bounces.kibamail.test"
    mac_b = rua_tag(secret, "team-rb").rpartition(".")[2]
    before = _forged()
    with smtplib.SMTP("127.0.0.1", running_mta.mta.inbound_port, timeout=60) as client:
        for forged in ("team-ra", f"team-ra.{mac_b}", "team-ra.aaaaaaaaaaaaaaaaaaaa"):
            client.ehlo()
            client.mail("noreply@reporter.example")
            code, text = client.rcpt(f"dmarc+{forged}@{domain}")
            assert code == 550 and b"5.7.1 Report address tag invalid" in text
            client.rset()
        assert _forged() == before + 3
        assert _stored(dmarc_tables, "team-ra") == 0

        # The same report for two teams is stored for each; twice for one team, once.
        for team in ("team-ra", "team-ra", "team-rb"):
            rua = f"dmarc+{rua_tag(secret, team)}@{domain}"
            assert not client.sendmail("noreply@reporter.example", [rua], report_mail())
    assert _stored(dmarc_tables, "team-ra") == 1
    assert _stored(dmarc_tables, "team-rb") == 1
