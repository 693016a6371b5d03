"""Parsing every format: the shared fixtures, RFC 9990, failure and SMTP TLS reports."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pytest

from deliverability.models import AggregateReport, ForensicReport, TlsReport
from deliverability.parser import parse_bytes, parse_file
from deliverability.samples import aggregate_xml, zipped

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).parent / "fixtures"

EXPECTED_SOLARMORA = {
    # file: (p, disposition, dkim, spf)
    "report-valid.xml": ("none", "none", "fail", "pass"),
    "report-dkim-fail.xml": ("none", "none", "fail", "pass"),
    "report-spf-fail.xml": ("none", "none", "pass", "fail"),
    "report-quarantine.xml": ("quarantine", "quarantine", "fail", "fail"),
    "report-reject.xml": ("reject", "reject", "fail", "fail"),
}


def _single_aggregate(path: Path) -> AggregateReport:
    outcome = parse_file(path)
    assert outcome.errors == []
    assert len(outcome.reports) == 1
    report = outcome.reports[0]
    assert isinstance(report, AggregateReport)
    return report


@pytest.mark.parametrize("name", sorted(EXPECTED_SOLARMORA))
def test_shared_xml_fixtures_parse_to_the_right_record(name: str) -> None:
    report = _single_aggregate(FIXTURES / name)
    p, disposition, dkim, spf = EXPECTED_SOLARMORA[name]
    assert report.report_metadata == {
        "org_name": "solarmora.com",
        "email": "noreply-dmarc-support@solarmora.com",
        "extra_contact_info": "http://solarmora.com/dmarc/support",
        "report_id": "9391651994964116463",
        "begin": 1335571200,
        "end": 1335657599,
        "errors": [],
        "generator": None,
    }
    policy = report.policy_published
    assert (policy["domain"], policy["adkim"], policy["aspf"]) == ("bix-business.com", "r", "r")
    assert (policy["p"], policy["sp"], policy["pct"]) == (p, "none", 100)
    [record] = report.records
    assert (record.source_ip, record.count, record.header_from) == (
        "203.0.113.209",
        2,
        "bix-business.com",
    )
    assert (record.disposition, record.dkim, record.spf) == (disposition, dkim, spf)
    assert [r.result for r in record.auth_results["dkim"]] == [dkim]
    assert [r.result for r in record.auth_results["spf"]] == [spf]
    assert report.warnings == []


def test_invalid_fixture_is_rejected_with_a_reason() -> None:
    outcome = parse_file(FIXTURES / "report-invalid.xml")
    assert outcome.reports == []
    assert len(outcome.errors) == 1
    assert "report-invalid.xml" in outcome.errors[0]
    assert "not a DMARC aggregate report" in outcome.errors[0]


def test_email_with_gzip_attachment() -> None:
    report = _single_aggregate(FIXTURES / "email-source-with-gz.txt")
    assert report.report_metadata["report_id"] == "d745978b-b805-40b2-970c-8379e4070130"
    assert report.report_metadata["begin"] == 1682294400
    assert report.policy_published["domain"] == "vecttor.co"
    assert sum(r.count for r in report.records) == report.total_messages >= 1
    assert report.source.endswith(".xml")


def test_email_with_zip_attachment() -> None:
    report = _single_aggregate(FIXTURES / "email-source-with-zip.txt")
    meta = report.report_metadata
    assert (meta["org_name"], meta["report_id"]) == ("google.com", "18210385807609460382")
    assert (meta["begin"], meta["end"]) == (1682294400, 1682380799)
    assert report.policy_published["p"] == "reject"
    [record] = report.records
    assert (record.source_ip, record.count, record.dkim, record.spf) == (
        "54.240.4.14",
        22,
        "pass",
        "pass",
    )
    assert [d.domain for d in record.auth_results["dkim"]] == ["lets.poker", "amazonses.com"]


def test_rfc9990_report() -> None:
    report = _single_aggregate(FIXTURES / "rfc9990-report.xml")
    assert report.schema == "rfc9990"
    assert report.policy_published["np"] == "none"
    assert report.policy_published["discovery_method"] == "treewalk"
    assert report.policy_published["pct"] is None
    assert report.records[0].auth_results["dkim"][0].selector == "abc123"
    assert report.records[0].envelope_from == "example.com"


def test_failure_report() -> None:
    outcome = parse_file(FIXTURES / "forensic-report.eml")
    [report] = outcome.reports
    assert isinstance(report, ForensicReport)
    assert (report.feedback_type, report.source_ip, report.reported_domain) == (
        "auth-failure",
        "192.0.2.1",
        "example.net",
    )
    assert report.fields["auth-failure"] == "dkim"
    assert report.original_headers["subject"] == "Earn money"
    assert report.arrival_date == 1110304800


def test_smtp_tls_report_plain_and_gzipped() -> None:
    data = (FIXTURES / "smtp-tls-report.json").read_bytes()
    for payload in (data, gzip.compress(data)):
        [report] = parse_bytes(payload, "tls.json").reports
        assert isinstance(report, TlsReport)
        [policy] = report.policies
        assert (policy.successful_sessions, policy.failed_sessions) == (5326, 303)
        assert len(policy.failure_details) == 3
        assert report.begin == 1459468800


def test_zip_with_several_reports_gives_one_report_each() -> None:
    rng = random.Random(1)
    first, _ = aggregate_xml(rng, 3, report_id="a")
    second, _ = aggregate_xml(rng, 5, report_id="b")
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.xml", first)
        archive.writestr("b.xml", second)
    outcome = parse_bytes(buffer.getvalue(), "two.zip")
    assert outcome.errors == []
    assert [len(r.records) for r in outcome.reports] == [3, 5]


def test_generated_reports_keep_counts_and_totals() -> None:
    rng = random.Random(3)
    for records in (1, 7, 120):
        xml, total = aggregate_xml(rng, records)
        [report] = parse_bytes(zipped("r.xml", xml.encode()), "r.zip").reports
        assert len(report.records) == records
        assert report.total_messages == total


def _mail_with(*attachments: tuple[str, bytes, str]) -> bytes:
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"] = "reports@receiver.example"
    message["To"] = "rua@kibamail.example"
    message["Subject"] = "Report"
    message.set_content("reports attached")
    for filename, data, ctype in attachments:
        maintype, subtype = ctype.split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes()


def test_email_with_tls_report_and_a_broken_attachment_keeps_the_good_one() -> None:
    tls = gzip.compress((FIXTURES / "smtp-tls-report.json").read_bytes())
    raw = _mail_with(
        ("broken.zip", b"PK\x03\x04 not really", "application/zip"),
        ("logo.png", b"\x89PNG\r\n\x1a\n", "image/png"),
        ("tls.json.gz", tls, "application/tlsrpt+gzip"),
    )
    outcome = parse_bytes(raw, "mail.eml")
    assert [r.report_type for r in outcome.reports] == ["smtp_tls"]
    assert len(outcome.errors) == 1 and "broken.zip" in outcome.errors[0]


def test_email_with_plain_xml_attachment() -> None:
    xml = (FIXTURES / "report-spf-fail.xml").read_bytes()
    [report] = parse_bytes(_mail_with(("r.xml", xml, "text/xml")), "mail.eml").reports
    assert isinstance(report, AggregateReport)
    assert report.records[0].spf == "fail"
