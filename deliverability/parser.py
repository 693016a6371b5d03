"""One entry point for every report format: bytes (or a file) in, reports and reasons out.

Errors are collected per part, never raised past ``parse_bytes``: one bad
attachment or file must not stop the rest of a mailbox or a batch.
"""

from __future__ import annotations

import email
import email.parser
import email.policy
import re
from pathlib import Path

from deliverability.aggregate import parse_aggregate
from deliverability.extract import Payload, email_attachments, to_utf8, unwrap
from deliverability.forensic import is_failure_report, parse_failure_report, parse_tls_report
from deliverability.models import AggregateReport, ParseOutcome, ReportError

# An element opened (never closed) before <feedback>, e.g. a stray
# `<xs:schema xmlns:xs=...>` some reporters wrap the report in. Only the start tag is
# matched: what follows must be the <feedback> element itself.
_STRAY_ROOT = re.compile(
    rb"\A(?P<head>(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*\?>)?\s*)"
    rb"<(?P<name>(?:[A-Za-z_][\w.-]*:)?[A-Za-z_][\w.-]*)(?:\s[^<>]*)?>\s*"
    rb"(?=<(?:[A-Za-z_][\w.-]*:)?feedback[\s>])"
)


_HEADERS_ONLY = email.parser.BytesParser(policy=email.policy.compat32)


def _without_stray_root(data: bytes) -> tuple[bytes, str]:
    """The report without an unclosed wrapper element before <feedback> (and which
    one it was), or the data unchanged and ""."""
    match = _STRAY_ROOT.match(data[:4096])
    if match is None:
        return data, ""
    name = match.group("name")
    local = name.rpartition(b":")[2].lower()
    if local == b"feedback" or re.search(rb"</\s*" + re.escape(name) + rb"\s*>", data):
        return data, ""
    return match.group("head") + data[match.end() :], name.decode("ascii")


def _aggregate(data: bytes, name: str) -> AggregateReport:
    """parse_aggregate, recovering a report wrapped in a stray unclosed root element."""
    stripped, wrapper = _without_stray_root(to_utf8(data))
    report = parse_aggregate(stripped, name)
    if wrapper:
        report.warnings.insert(
            0, f"stray unclosed root element <{wrapper}> before <feedback> removed"
        )
    return report


def _parse_payload(payload: Payload, outcome: ParseOutcome) -> None:
    try:
        if payload.kind == "xml":
            outcome.reports.append(_aggregate(payload.data, payload.name))
        elif payload.kind == "json":
            outcome.reports.append(parse_tls_report(payload.data, payload.name))
        elif payload.kind == "email":
            _parse_email(payload.data, payload.name, outcome)
    except ReportError as exc:
        reason = str(exc)
        outcome.errors.append(
            reason if reason.startswith(payload.name) else f"{payload.name}: {reason}"
        )


# A blank line under the email package's line splitting (CRLF, CR or LF endings).
_BLANK_LINE = re.compile(rb"\n\r?\n|\r\r")


def _header_section(data: bytes) -> bytes:
    """``data`` cut after its first blank line: the header parser stops at or before it,
    so the headers it reads are the full message's, without walking the MIME body."""
    match = _BLANK_LINE.search(data)
    return data if match is None else data[: match.end()]


# The email package's parser (email.feedparser) ends the header section at the first
# line that does not match its headerRE; lines end at CRLF, CR or LF. On bytes (ASCII
# decoding keeps every byte >= 0x80 out of these classes), with LF line ends found by
# the fast literal search, so only the line starts are looked at:
_HEADER_START = rb"(?:From |[\x21-\x39\x3b-\x7e]*:|[ \t])"
_FIRST_IS_HEADER = re.compile(_HEADER_START)
_NOT_A_HEADER_LINE = re.compile(rb"\n(?!" + _HEADER_START + rb")")
_NEXT_FIELD = re.compile(rb"\n(?![ \t])")  # the end of a field's continuation lines
# In the lower-cased section, after a line end: a Content-* or MIME-Version field.
_MIME_FIELD = re.compile(rb"\n(?:content-[\x21-\x39\x3b-\x7e]*|mime-version):")


def mime_headers_only(data: bytes) -> bytes:
    """``data`` with the top-level header fields other than ``Content-*`` and
    MIME-Version left out (continuation lines included); everything from the line that
    ends the header section on is kept byte for byte.

    The attachment walk reads only those fields of the top level (type, boundary,
    disposition, transfer encoding), so it finds the same parts, while the email
    parser no longer spends most of its time on the Received/DKIM/ARC headers real
    reports arrive with. Returned unchanged when the section has a lone CR line end or
    a "From " line below its first (where the email package would end the headers).
    """
    if not _FIRST_IS_HEADER.match(data):
        return data
    found = _NOT_A_HEADER_LINE.search(data)
    end = found.start() + 1 if found else len(data)
    head = data[:end]
    if b"\nFrom " in head or head.count(b"\r") != head.count(b"\r\n"):
        return data
    kept: list[bytes] = []
    if head.startswith(b"From "):  # the envelope line stays first, as it was
        kept.append(_field(head, 0))
    lowered = b"\n" + head.lower()
    kept.extend(_field(head, match.start()) for match in _MIME_FIELD.finditer(lowered))
    kept.append(data[end:])
    return b"".join(kept)


def _field(head: bytes, start: int) -> bytes:
    """The line of ``head`` starting at ``start`` with its continuation lines."""
    found = _NEXT_FIELD.search(head, start)
    return head[start : found.start() + 1 if found else len(head)]


def _parse_email(data: bytes, name: str, outcome: ParseOutcome) -> None:
    # Only a failure report needs the whole message parsed here; an aggregate report's
    # email is parsed once, by email_attachments. Its Content-Type must read
    # multipart/report (ASCII case folded), so without those bytes in the header section
    # the headers need no parsing either.
    head = _header_section(data)
    if b"multipart/report" in head.lower() and is_failure_report(
        _HEADERS_ONLY.parsebytes(head, headersonly=True)
    ):
        message = email.message_from_bytes(data, policy=email.policy.compat32)
        outcome.reports.append(parse_failure_report(message, name))
        return
    before = len(outcome.reports) + len(outcome.errors)
    payloads, errors = email_attachments(mime_headers_only(data), name)
    outcome.errors.extend(errors)
    for payload in payloads:
        _parse_payload(payload, outcome)
    if len(outcome.reports) + len(outcome.errors) == before:
        raise ReportError("email carries no DMARC or SMTP TLS report")


def parse_bytes(data: bytes, name: str = "<bytes>") -> ParseOutcome:
    """Parse any supported input; the outcome lists reports found and parts rejected."""
    outcome = ParseOutcome(source=name)
    try:
        payloads = unwrap(data, name)
    except ReportError as exc:
        reason = str(exc)
        outcome.errors.append(reason if reason.startswith(name) else f"{name}: {reason}")
        return outcome
    for payload in payloads:
        _parse_payload(payload, outcome)
    return outcome


def parse_file(path: str | Path) -> ParseOutcome:
    """Parse one file; unreadable files become an error in the outcome, not an exception."""
    name = str(path)
    try:
        with open(path, "rb") as handle:  # Path.read_bytes without its extra object
            data = handle.read()
    except OSError as exc:
        return ParseOutcome(source=name, errors=[f"{name}: cannot read ({exc.strerror or exc})"])
    return parse_bytes(data, name)
