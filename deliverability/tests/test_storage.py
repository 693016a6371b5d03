"""Ingestion into the real warehouse (chDB gateway over HTTP): idempotent, nothing on bad input."""

from __future__ import annotations

import gzip
import random
from pathlib import Path
from typing import Any

import pytest

from deliverability.ingest import ingest_bytes, ingest_message
from deliverability.samples import aggregate_xml
from deliverability.sources import SourceEnricher, service_for
from kibamail.contracts import ClickHouseTable

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent / "fixtures"
TABLES = [
    ClickHouseTable.DMARC_REPORTS,
    ClickHouseTable.DMARC_RECORDS,
    ClickHouseTable.DMARC_FAILURE_REPORTS,
    ClickHouseTable.TLS_REPORTS,
]


@pytest.fixture
def ch(dmarc_tables: Any) -> Any:
    return dmarc_tables


def _count(ch: Any, table: ClickHouseTable, where: str = "1") -> int:
    return int(ch.query(f"SELECT count() FROM {table.value} FINAL WHERE {where}").result_rows[0][0])


def test_email_report_stored_once_with_record_fields(ch: Any) -> None:
    raw = (FIXTURES / "email-source-with-zip.txt").read_bytes()
    first = ingest_message(raw, ch, team_id="team-1")
    assert first.accepted and len(first.stored) == 1 and first.errors == []
    again = ingest_message(raw, ch, team_id="team-1")
    assert again.stored == [] and again.duplicates == first.stored
    assert _count(ch, ClickHouseTable.DMARC_REPORTS) == 1
    rows = ch.query(
        "SELECT domain, day, source_ip, message_count, dkim_result, spf_result, dmarc_pass,"
        " disposition, dkim_domains, team_id FROM raw_dmarc_records FINAL"
    ).result_rows
    assert len(rows) == 1
    domain, day, ip, count, dkim, spf, dmarc_pass, disposition, dkim_domains, team = rows[0]
    assert (domain, str(day), ip, count) == ("lets.poker", "2023-04-24", "54.240.4.14", 22)
    assert (dkim, spf, dmarc_pass, disposition) == ("pass", "pass", 1, "none")
    assert list(dkim_domains) == ["lets.poker", "amazonses.com"]
    assert team == "team-1"


def test_invalid_input_changes_nothing(ch: Any) -> None:
    result = ingest_bytes((FIXTURES / "report-invalid.xml").read_bytes(), ch, name="bad.xml")
    assert not result.accepted
    assert "not a DMARC aggregate report" in result.errors[0]
    assert sum(_count(ch, table) for table in TABLES) == 0


def test_batch_of_generated_reports_totals(ch: Any) -> None:
    rng = random.Random(21)
    expected_total = 0
    for index in range(5):
        xml, total = aggregate_xml(rng, 10, report_id=f"batch-{index}", domain="batch.example")
        expected_total += total
        ingest_bytes(gzip.compress(xml.encode()), ch, name=f"r{index}.xml.gz")
    # the same files again (a re-polled mailbox) must not double anything
    rng = random.Random(21)
    for index in range(5):
        xml, _ = aggregate_xml(rng, 10, report_id=f"batch-{index}", domain="batch.example")
        assert ingest_bytes(xml.encode(), ch, name="again").duplicates
    summed = ch.query(
        "SELECT sum(message_count), count() FROM raw_dmarc_records FINAL"
        " WHERE domain = 'batch.example'"
    ).result_rows[0]
    assert tuple(summed) == (expected_total, 50)


def test_failure_and_tls_reports_stored(ch: Any) -> None:
    forensic = ingest_message((FIXTURES / "forensic-report.eml").read_bytes(), ch)
    tls = ingest_bytes((FIXTURES / "smtp-tls-report.json").read_bytes(), ch, name="tls.json")
    assert forensic.stored and tls.stored
    row = ch.query(
        "SELECT reported_domain, source_ip, auth_failure FROM raw_dmarc_failure_reports FINAL"
    ).result_rows[0]
    assert tuple(row) == ("example.net", "192.0.2.1", "dkim")
    row = ch.query(
        "SELECT policy_domain, successful_sessions, failed_sessions FROM raw_tls_reports FINAL"
    ).result_rows[0]
    assert tuple(row) == ("company-y.example", 5326, 303)


def test_sending_service_from_reverse_dns() -> None:
    assert service_for("a7-5.smtp-out.amazonses.com") == "Amazon SES"
    assert service_for("mail-qk1-f202.google.com") == "Google"
    assert service_for("mx.unknown.example") == ""
    assert SourceEnricher().lookup("192.0.2.1").reverse_dns == ""


def test_daily_digest_counts_each_report_once(ch: Any) -> None:
    from datetime import date

    from deliverability.digest import build_digest, render_text

    for name in ("report-valid.xml", "report-valid.xml", "email-source-with-zip.txt"):
        ingest_bytes((FIXTURES / name).read_bytes(), ch, name=name)
    digest = build_digest(ch, "bix-business.com", date(2012, 4, 28))
    assert (digest["messages"], digest["dmarc_pass"], digest["reports"]) == (2, 2, 1)
    assert digest["spf_aligned"] == 2 and digest["dkim_aligned"] == 0
    assert digest["dispositions"] == {"none": 2}
    assert digest["sources"][0]["source_ip"] == "203.0.113.209"
    text = render_text(digest)
    assert "2 messages in 1 reports" in text and "100.0% passed DMARC" in text
    empty = build_digest(ch, "bix-business.com", date(2012, 4, 29))
    assert empty["messages"] == 0 and "No DMARC reports" in render_text(empty)
