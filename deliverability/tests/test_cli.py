"""`kibamail dmarc parse`: JSON lines, one error line per bad file, batch never stopped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).parent / "fixtures"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "console.cli", "dmarc", "parse", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_batch_with_a_bad_file_in_the_middle() -> None:
    files = [
        FIXTURES / "report-valid.xml",
        FIXTURES / "report-invalid.xml",
        FIXTURES / "email-source-with-zip.txt",
        FIXTURES / "does-not-exist.xml",
        FIXTURES / "report-reject.xml",
    ]
    result = _run(*map(str, files), "--json")
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["policy_published"]["p"] for line in lines] == ["none", "reject", "reject"]
    for line in lines:
        assert set(line["report_metadata"]) >= {"org_name", "email", "report_id", "begin", "end"}
        assert set(line["policy_published"]) >= {"domain", "adkim", "aspf", "p", "sp", "pct"}
        for record in line["records"]:
            assert set(record) >= {
                "source_ip",
                "count",
                "disposition",
                "dkim",
                "spf",
                "header_from",
                "auth_results",
            }
    errors = result.stderr.splitlines()
    assert len(errors) == 2
    assert "report-invalid.xml" in errors[0] and "not a DMARC aggregate report" in errors[0]
    assert "does-not-exist.xml" in errors[1] and "cannot read" in errors[1]


def test_all_valid_files_exit_zero_and_one_line_per_report() -> None:
    result = _run(str(FIXTURES / "report-valid.xml"), str(FIXTURES / "email-source-with-gz.txt"))
    assert result.returncode == 0, result.stderr
    reports = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["report_metadata"]["report_id"] for r in reports] == [
        "9391651994964116463",
        "d745978b-b805-40b2-970c-8379e4070130",
    ]
    assert reports[0]["records"][0]["source_ip"] == "203.0.113.209"
    assert result.stderr == ""


def test_text_mode_summarises() -> None:
    result = _run("--text", str(FIXTURES / "report-quarantine.xml"))
    assert result.returncode == 0
    assert "p=quarantine records=1 messages=2 dmarc_pass=0" in result.stdout


def test_one_error_line_per_bad_file_even_with_several_bad_attachments(tmp_path: Path) -> None:
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"] = "reports@example.net"
    message["Subject"] = "Report domain: example.com"
    message.set_content("two broken attachments")
    message.add_attachment(b"PK\x03\x04broken", maintype="application", subtype="zip",
                           filename="a.zip")  # fmt: skip
    message.add_attachment(b"\x1f\x8b\x08\x00truncated", maintype="application",
                           subtype="gzip", filename="b.xml.gz")  # fmt: skip
    mail = tmp_path / "two-bad.eml"
    mail.write_bytes(message.as_bytes())
    utf16 = tmp_path / "utf16.xml"
    utf16.write_bytes((FIXTURES / "report-valid.xml").read_text().encode("utf-16"))
    plain = tmp_path / "notes.txt"
    plain.write_text("just some notes\nover two lines\n")

    result = _run(str(mail), str(tmp_path), str(utf16), str(plain), "--json")
    assert result.returncode == 1
    assert [json.loads(line)["report_metadata"]["report_id"] for line in
            result.stdout.splitlines()] == ["9391651994964116463"]  # fmt: skip
    errors = result.stderr.splitlines()
    assert len(errors) == 3
    assert errors.pop(1) == f"error: {tmp_path}: cannot read (Is a directory)"
    assert errors[0].startswith(f"error: {mail}") and "a.zip" in errors[0]
    assert "b.xml.gz" in errors[0]
    assert errors[1].startswith(f"error: {plain}: ") and "not a report" in errors[1]
