"""Composers for provider-shaped reports (non-DSN layouts, HTML-only, legacy charsets).

Builds on ``fixture_kit`` (originals with signed return paths, DSN blocks, labels); adds
the single-part and multipart/mixed layouts providers use and byte-exact charsets.
"""

from __future__ import annotations

import base64
import quopri

from kibamail.bounces.tests.fixture_kit import DATE, Rcpt, expect, original, return_path

HARD = {"user_unknown", "host_unknown", "has_moved", "null_mx"}


def enc(text: str, cte: str, charset: str) -> bytes:
    raw = text.encode(charset, "replace")
    if cte == "base64":
        b64 = base64.b64encode(raw).decode()
        return ("\n".join(b64[i : i + 76] for i in range(0, len(b64), 76)) + "\n").encode()
    if cte == "quoted-printable":
        return quopri.encodestring(raw)
    return raw


def part(
    text: str, *, ctype: str = "text/plain", charset: str = "utf-8", cte: str = "7bit"
) -> bytes:
    head = f"Content-Type: {ctype}; charset={charset}\nContent-Transfer-Encoding: {cte}\n\n"
    return head.encode() + enc(text, cte, charset)


def dsn_part(rcpts: list[Rcpt], reporting_mta: str) -> bytes:
    body = f"Reporting-MTA: {reporting_mta}\nArrival-Date: {DATE}\n\n"
    body += "\n\n".join(r.block() for r in rcpts) + "\n"
    return b"Content-Type: message/delivery-status\n\n" + body.encode()


def original_part(recipient: str, n: int, ctype: str = "message/rfc822") -> bytes:
    text = original(recipient, n=n, headers_only=ctype == "text/rfc822-headers")
    return f"Content-Type: {ctype}\n\n{text}".encode()


def message(
    headers: str,
    parts: list[bytes] | None = None,
    *,
    body: bytes | None = None,
    subtype: str = "mixed",
    n: int = 1,
    single: str = "text/plain; charset=utf-8",
    cte: str = "7bit",
) -> bytes:
    """A report: ``parts`` become a multipart/<subtype>, else ``body`` is a single part."""
    head = headers.strip("\n") + "\nMIME-Version: 1.0\n"
    if parts is None:
        content = f"Content-Type: {single}\nContent-Transfer-Encoding: {cte}\n\n"
        return head.encode() + content.encode() + (body or b"")
    boundary = f"=_prov_{n:04d}"
    extra = "; report-type=delivery-status" if subtype == "report" else ""
    out = head + f'Content-Type: multipart/{subtype}{extra};\n\tboundary="{boundary}"\n\n'
    data = out.encode() + b"This is a multi-part message in MIME format.\n\n"
    for item in parts:
        data += f"--{boundary}\n".encode() + item + b"\n"
    return data + f"--{boundary}--\n".encode()


def headers(sender: str, subject: str, n: int, recipient: str, extra: str = "") -> str:
    """The report's own headers, addressed to the signed return path."""
    to = return_path(f"msg-{n:04d}@shop.example.com", recipient)
    return (
        f"Return-Path: <>\nFrom: {sender}\nTo: <{to}>\nSubject: {subject}\nDate: {DATE}\n"
        f"Message-ID: <ndr-{n:04d}@report.example.net>\n{extra}"
    )


def label(kind: str, *rows: tuple[str, str, str]) -> dict[str, object]:
    """(recipient, reason, status) rows; suppress only for 5xx recipient-side reasons."""
    out = []
    for recipient, reason, status in rows:
        row_kind = "delayed" if reason == "delayed" else "bounce"
        hard = reason in HARD and not status.startswith("4")
        out.append((recipient, row_kind, reason, hard, status))
    return expect(kind, *out)
