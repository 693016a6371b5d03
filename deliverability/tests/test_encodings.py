"""Reports in UTF-16/32 (with and without BOM), UTF-8 with BOM and declared 8-bit encodings,
bare and inside gzip, zip and MIME: built from the shared fixtures, parsed like the
UTF-8 originals."""

from __future__ import annotations

import gzip
from email.message import EmailMessage
from pathlib import Path

import pytest

from deliverability.extract import sniff, to_utf8, wide_encoding
from deliverability.models import AggregateReport
from deliverability.parser import parse_bytes
from deliverability.samples import zipped

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = sorted(p.name for p in FIXTURES.glob("report-*.xml") if p.name != "report-invalid.xml")
BOMS = {"utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff", "utf-32-le": b"\xff\xfe\x00\x00"}


def encode(xml: str, codec: str, bom: bool) -> bytes:
    declared = xml.replace('encoding="UTF-8"', f'encoding="{codec.upper()[:6]}"')
    return (BOMS[codec] if bom else b"") + declared.encode(codec)


def the_report(data: bytes, name: str = "report.xml") -> AggregateReport:
    outcome = parse_bytes(data, name)
    assert outcome.errors == [], outcome.errors
    [report] = outcome.reports
    assert isinstance(report, AggregateReport)
    return report


def same(report: AggregateReport, original: AggregateReport) -> None:
    assert report.report_metadata == original.report_metadata
    assert report.policy_published == original.policy_published
    assert report.records == original.records
    assert report.warnings == original.warnings


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("bom", [True, False], ids=["bom", "no-bom"])
@pytest.mark.parametrize("name", SHARED)
def test_utf16_shared_fixtures_parse_like_the_utf8_originals(
    name: str, codec: str, bom: bool
) -> None:
    original = (FIXTURES / name).read_text()
    data = encode(original, codec, bom)
    assert sniff(data) == "xml"
    same(the_report(data, name), the_report(original.encode(), name))


@pytest.mark.parametrize(
    ("codec", "bom"), [("utf-16-le", True), ("utf-16-be", False), ("utf-32-le", True)]
)
def test_non_ascii_text_survives_wide_encodings(codec: str, bom: bool) -> None:
    xml = (
        (FIXTURES / "report-valid.xml")
        .read_text()
        .replace("solarmora.com</org_name>", "Sölarmora 日本.com</org_name>")
    )
    report = the_report(encode(xml, codec, bom))
    assert report.report_metadata["org_name"] == "Sölarmora 日本.com"


def test_utf16_inside_gzip_zip_and_mime() -> None:
    original = (FIXTURES / "report-reject.xml").read_text()
    expected = the_report(original.encode())
    le = encode(original, "utf-16-le", bom=True)
    be = encode(original, "utf-16-be", bom=False)
    same(the_report(gzip.compress(le), "r.xml.gz"), expected)
    same(the_report(zipped("r.xml", be), "r.zip"), expected)

    message = EmailMessage()
    message["From"] = "noreply-dmarc-support@solarmora.com"
    message["To"] = "dmarc@mta.kibamail.local"
    message["Subject"] = "Report domain: bix-business.com"
    message.set_content("Aggregate reports attached.")
    message.add_attachment(le, maintype="text", subtype="xml", filename="a.xml")
    message.add_attachment(
        gzip.compress(be), maintype="application", subtype="gzip", filename="b.xml.gz"
    )
    message.add_attachment(
        zipped("c.xml", be), maintype="application", subtype="zip", filename="c.zip"
    )
    outcome = parse_bytes(message.as_bytes(), "mail.eml")
    assert outcome.errors == []
    assert len(outcome.reports) == 3
    for report in outcome.reports:
        assert isinstance(report, AggregateReport)
        same(report, expected)


def test_utf8_bom_and_declared_latin1_and_cp1252() -> None:
    original = (FIXTURES / "report-valid.xml").read_text()
    same(the_report(b"\xef\xbb\xbf" + original.encode()), the_report(original.encode()))
    for codec in ("ISO-8859-1", "windows-1252"):
        xml = original.replace('encoding="UTF-8"', f'encoding="{codec}"')
        xml = xml.replace("solarmora.com</org_name>", "Sölarmora ÿ.com</org_name>")
        report = the_report(xml.encode(codec))
        assert report.report_metadata["org_name"] == "Sölarmora ÿ.com"
        assert report.warnings == []


def test_mislabelled_utf16_that_is_really_utf8_is_recovered_with_a_warning() -> None:
    xml = (
        (FIXTURES / "report-valid.xml").read_text().replace('encoding="UTF-8"', 'encoding="UTF-16"')
    )
    report = the_report(xml.replace(">solarmora.com</org", ">Sölarmora.com</org").encode())
    assert report.report_metadata["org_name"] == "Sölarmora.com"
    assert any("bytes are 8-bit" in warning for warning in report.warnings)


def test_hostile_and_truncated_utf16_are_still_refused() -> None:
    original = (FIXTURES / "report-valid.xml").read_text()
    xxe = original.replace(
        "<feedback>", '<!DOCTYPE f [<!ENTITY x SYSTEM "file:///etc/passwd">]><feedback>'
    )
    outcome = parse_bytes(encode(xxe, "utf-16-be", bom=False), "xxe.xml")
    assert outcome.reports == [] and "DOCTYPE/ENTITY" in outcome.errors[0]
    cut = encode(original, "utf-16-le", bom=True)[:-201]  # odd length: half a code unit
    outcome = parse_bytes(cut, "cut.xml")
    assert outcome.reports == [] and "closing </feedback> tag is missing" in outcome.errors[0]


def test_wide_encoding_detection_leaves_binary_and_8bit_alone() -> None:
    assert wide_encoding(b"<\x00?\x00x\x00") == ("utf-16-le", 0)
    assert wide_encoding(b"\x00<\x00?") == ("utf-16-be", 0)
    assert wide_encoding(b"\xfe\xff\x00<") == ("utf-16-be", 2)
    assert wide_encoding(b"<?xml") is None
    assert wide_encoding(b"\x1f\x8b\x08\x00") is None
    assert to_utf8(b"\xef\xbb\xbf<a/>") == b"<a/>"
    assert to_utf8('<?xml version="1.0" encoding="UTF-16"?><a/>'.encode("utf-16")) == (
        b'<?xml version="1.0"?><a/>'
    )
