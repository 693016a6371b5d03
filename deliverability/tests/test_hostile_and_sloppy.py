"""Hostile input is rejected in bounded memory/time; sloppy input is recovered with warnings."""

from __future__ import annotations

import io
import random
import tracemalloc
import zipfile
import zlib

import pytest

from deliverability import extract
from deliverability.models import AggregateReport
from deliverability.parser import parse_bytes
from deliverability.samples import aggregate_xml

pytestmark = pytest.mark.unit

GOOD_XML, GOOD_TOTAL = aggregate_xml(random.Random(5), 2, report_id="good")
ZEROS = b"\0" * (1 << 20)


def _gzip_of_zeros(megabytes: int) -> bytes:
    deflater = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    chunks = [deflater.compress(ZEROS) for _ in range(megabytes)]
    return b"".join(chunks) + deflater.flush()


def _zip_of_zeros(megabytes: int) -> bytes:
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("report.xml", "w", force_zip64=True) as member,
    ):
        for _ in range(megabytes):
            member.write(ZEROS)
    return buffer.getvalue()


def _only_error(data: bytes, name: str = "hostile") -> str:
    outcome = parse_bytes(data, name)
    assert outcome.reports == []
    assert len(outcome.errors) == 1
    assert outcome.errors[0].startswith(name)
    return outcome.errors[0]


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE feedback [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<feedback><report_metadata><org_name>&xxe;</org_name></report_metadata></feedback>"""

LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10 if i > 1 else "&lol;" * 10}">'.encode()
        for i in range(1, 10)
    )
    + b"]><feedback>&lol9;</feedback>"
)


@pytest.mark.parametrize("payload", [XXE, LAUGHS], ids=["xxe", "billion-laughs"])
def test_entity_attacks_rejected(payload: bytes) -> None:
    assert "DOCTYPE/ENTITY declarations are not allowed" in _only_error(payload)


def test_gzip_bomb_rejected_in_bounded_memory() -> None:
    bomb = _gzip_of_zeros(200)  # 200 MB of zeros in ~200 KB
    tracemalloc.start()
    try:
        reason = _only_error(bomb, "bomb.xml.gz")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "decompression bomb" in reason
    assert peak < 2 * extract.MAX_PAYLOAD_BYTES + (8 << 20)


def test_zip_bomb_rejected_in_bounded_memory() -> None:
    bomb = _zip_of_zeros(100)
    tracemalloc.start()
    try:
        reason = _only_error(bomb, "bomb.zip")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "bomb" in reason
    assert peak < 2 * extract.MAX_PAYLOAD_BYTES + (8 << 20)


def test_zip_member_lying_about_its_size_is_still_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extract, "MAX_PAYLOAD_BYTES", 1 << 20)
    archive = bytearray(_zip_of_zeros(3))
    # Patch the declared sizes in the central directory to claim a tiny member.
    central = archive.rfind(b"PK\x01\x02")
    archive[central + 24 : central + 28] = (100).to_bytes(4, "little")
    outcome = parse_bytes(bytes(archive), "liar.zip")
    assert outcome.reports == []
    assert outcome.errors and "liar.zip" in outcome.errors[0]


def test_nested_zips_beyond_the_depth_limit_rejected() -> None:
    data = GOOD_XML.encode()
    for level in range(extract.MAX_DEPTH + 2):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr(f"level{level}.zip", data)
        data = buffer.getvalue()
    assert "nested deeper" in _only_error(data, "deep.zip")


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (GOOD_XML.encode()[: len(GOOD_XML) // 2], "truncated report"),
        (b"\x1f\x8b\x08\x00" + b"garbage" * 5, "corrupt gzip"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "not a report"),
        (b"", "empty file"),
        (b'{"hello": "world"}', "not an SMTP TLS report"),
        (b"Subject: hi\r\nFrom: a@b.example\r\n\r\njust text\r\n", "no DMARC or SMTP TLS report"),
        (b"PK\x03\x04garbage", "not a readable zip"),
    ],
    ids=["truncated-xml", "corrupt-gzip", "png", "empty", "json-not-tls", "plain-email", "bad-zip"],
)
def test_not_reports_rejected_with_reason(payload: bytes, expected: str) -> None:
    assert expected in _only_error(payload, "input")


def test_truncated_gzip_rejected() -> None:
    import gzip

    data = gzip.compress(GOOD_XML.encode() * 3)
    assert "truncated gzip" in _only_error(data[: len(data) - 20], "cut.xml.gz")


def _recovered(xml: bytes) -> AggregateReport:
    outcome = parse_bytes(xml, "sloppy.xml")
    assert outcome.errors == []
    [report] = outcome.reports
    assert isinstance(report, AggregateReport)
    assert report.warnings, "recovery must leave a warning on the report"
    return report


def test_invalid_bytes_for_declared_encoding_recovered() -> None:
    xml = GOOD_XML.encode().replace(b"Example Receiver", b"Example \xff\xfe Receiver")
    report = _recovered(xml)
    assert any("invalid bytes" in w or "invalid XML" in w for w in report.warnings)
    assert report.total_messages == GOOD_TOTAL
    assert report.report_metadata["org_name"].startswith("Example")


def test_unescaped_ampersand_recovered() -> None:
    xml, total = aggregate_xml(random.Random(9), 3, sloppy=True)
    report = _recovered(xml.encode())
    assert report.report_metadata["org_name"] == "AT&T Mail"
    assert any("unescaped '&'" in w for w in report.warnings)
    assert report.total_messages == total
    assert {r.disposition for r in report.records} <= {"none", "quarantine", "reject"}
    assert any("casing" in w for w in report.warnings)


def test_missing_optional_elements_get_rfc_defaults() -> None:
    xml = b"""<feedback><report_metadata><email>dmarc@rx.example</email>
    <report_id>x1</report_id><date_range><begin>1</begin><end>86400</end></date_range>
    </report_metadata><policy_published><domain>Example.COM</domain><p>None</p>
    </policy_published><record><row><source_ip>2001:db8::1</source_ip><count>4</count>
    </row><identifiers><header_from>example.com</header_from></identifiers></record>
    </feedback>"""
    report = _recovered(xml)
    policy = report.policy_published
    assert (policy["domain"], policy["adkim"], policy["aspf"], policy["p"], policy["sp"]) == (
        "example.com",
        "r",
        "r",
        "none",
        "none",
    )
    assert report.report_metadata["org_name"] == "rx.example"
    [record] = report.records
    assert (record.disposition, record.dkim, record.spf) == ("none", "fail", "fail")
    assert record.auth_results == {"dkim": [], "spf": []}


def test_bad_record_skipped_with_warning_others_kept() -> None:
    xml = GOOD_XML.replace("<count>", "<count>x", 1).encode()
    outcome = parse_bytes(xml, "r.xml")
    [report] = outcome.reports
    assert len(report.records) == 1
    assert any("record 0 skipped" in w for w in report.warnings)


def test_sloppy_recovery_matches_parsedmarc() -> None:
    parsedmarc = pytest.importorskip("parsedmarc")
    samples = [
        aggregate_xml(random.Random(11), 4, sloppy=True)[0].encode(),
        GOOD_XML.encode().replace(b"Example Receiver", b"Example \xff Receiver"),
    ]
    for xml in samples:
        [ours] = parse_bytes(xml, "s.xml").reports
        theirs = parsedmarc.parse_report_file(xml, offline=True, always_use_local_files=True)
        records = theirs["report"]["records"]
        assert len(ours.records) == len(records)
        assert ours.total_messages == sum(r["count"] for r in records)
        assert [r.disposition for r in ours.records] == [
            r["policy_evaluated"]["disposition"] for r in records
        ]
