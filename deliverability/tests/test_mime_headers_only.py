"""The parser hands the attachment walk only the top-level MIME header fields
(``parser.mime_headers_only``): the walk must find exactly the parts, names, types and
payloads it finds in the whole email, on real reports and on generated awkward ones
(folded fields, CR/LF/CRLF line ends, "From " lines, nameless and broken header lines)."""

from __future__ import annotations

import base64
import email
import email.policy
import gzip
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from deliverability.extract import email_attachments
from deliverability.parser import mime_headers_only, parse_bytes

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "dmarc"
REPORT = (FIXTURES / "report-valid.xml").read_bytes()

HEADER_LINES = [
    "Received: from mx.example by mx2.example",
    "DKIM-Signature: v=1; a=rsa-sha256;",
    " h=from:to:content-type; b=abc",
    "\tcontent-type: text/html",
    'Content-Type: multipart/mixed; boundary="BOUND"',
    'content-type: application/gzip; name="r.xml.gz"',
    "CONTENT-TYPE: text/plain",
    "Content-Transfer-Encoding: base64",
    'Content-Disposition: attachment; filename="report.xml.gz"',
    "MIME-Version: 1.0",
    "From: reporter@example.net",
    "From someone@example.net Mon Jan  1 00:00:00 2024",
    ":nameless value",
    "X-Junk: a",
    "a line without a colon",
    "Content-Type : spaced name",
    "Subject: =?utf-8?q?caf=C3=A9?=",
    "",
]
EOLS = ["\r\n", "\n", "\r"]


def _body(boundary_kind: int) -> str:
    attachment = base64.b64encode(gzip.compress(REPORT, mtime=0)).decode()
    if boundary_kind == 0:
        return attachment
    return (
        "--BOUND\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
        '--BOUND\r\nContent-Type: application/gzip; name="r.xml.gz"\r\n'
        f"Content-Transfer-Encoding: base64\r\n\r\n{attachment}\r\n--BOUND--\r\n"
    )


def _walk(data: bytes) -> list[tuple[Any, ...]]:
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    return [
        (
            part.get_content_type(),
            part.get_filename(),
            part.get_boundary(),
            part.is_multipart(),
            None if part.is_multipart() else part.get_payload(decode=True),
        )
        for part in message.walk()
    ]


def _same_walk(data: bytes) -> None:
    reduced = mime_headers_only(data)
    assert email_attachments(reduced, "x") == email_attachments(data, "x")
    assert _walk(reduced) == _walk(data)


def test_real_world_emails_same_parts_and_smaller() -> None:
    paths = sorted(FIXTURES.glob("*.txt")) + sorted(FIXTURES.glob("*.eml"))
    if SHARED.is_dir():
        paths += sorted(SHARED.iterdir())
    for path in paths:
        data = path.read_bytes()
        _same_walk(data)
    zipped = (FIXTURES / "email-source-with-zip.txt").read_bytes()
    assert len(mime_headers_only(zipped)) < len(zipped) // 2
    outcome = parse_bytes(zipped, "zip.eml")
    assert outcome.ok and len(outcome.reports) == 1


@settings(max_examples=400, deadline=None)
@given(
    lines=st.lists(st.sampled_from(HEADER_LINES), max_size=14),
    eols=st.lists(st.sampled_from(EOLS), min_size=14, max_size=14),
    body=st.integers(0, 1),
)
def test_generated_header_sections_same_parts(lines: list[str], eols: list[str], body: int) -> None:
    head = "".join(line + eols[i] for i, line in enumerate(lines))
    data = (head + "\r\n" + _body(body)).encode("utf-8")
    _same_walk(data)
    _same_walk(data.replace(b"\r\n", b"\n"))


def test_from_line_below_the_first_leaves_the_email_unchanged() -> None:
    data = b"Subject: x\nFrom someone\nContent-Type: text/plain\n\nbody\n"
    assert mime_headers_only(data) == data
    lone_cr = b"Subject: x\rContent-Type: text/plain\n\nbody\n"
    assert mime_headers_only(lone_cr) == lone_cr
    assert mime_headers_only(b"no header here\n\nbody") == b"no header here\n\nbody"
