"""Building blocks for synthesized report fixtures: originals, DSNs, encodings, labels.

Every fixture is invented (example.org/.com/.net, made-up people); the tokens are real
signed VERP tokens under a fixed test secret so attribution can be checked end to end.
"""

from __future__ import annotations

import base64
import json
import quopri
from dataclasses import dataclass, field
from pathlib import Path

from kibamail.report_tokens import return_path_ref, return_path_token

SECRET = "fixture-secret"
FIXTURES = Path(__file__).parent / "fixtures"
SENDER = "news@shop.example.com"
DATE = "Mon, 02 Mar 2026 10:15:00 +0000"


def token(message_id: str, recipient: str) -> str:
    """The signed local part ``bounces+<ref>.<mac>`` for one message and recipient."""
    return "bounces+" + return_path_token(SECRET, return_path_ref(SECRET, message_id, [recipient]))


def return_path(message_id: str, recipient: str) -> str:
    return f"{token(message_id, recipient)}@bounces.shop.example.com"


def original(
    recipient: str,
    *,
    n: int = 1,
    subject: str = "Your March newsletter",
    body: str = "Hello,\n\nHere is what is new this month.\n",
    headers_only: bool = False,
    truncate: bool = False,
) -> str:
    msgid = f"msg-{n:04d}@shop.example.com"
    head = (
        f"Return-Path: <{return_path(msgid, recipient)}>\n"
        f"Received: from mta1.shop.example.com (mta1.shop.example.com [192.0.2.10])\n"
        f"\tby mx.example.org with ESMTPS id 4Qx{n:04d}; {DATE}\n"
        f"From: Shop News <{SENDER}>\n"
        f"To: <{recipient}>\n"
        f"Subject: {subject}\n"
        f"Date: {DATE}\n"
        f"Message-ID: <{msgid}>\n"
        f"X-Kibamail-Message-ID: kb_{n:04d}\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=utf-8\n"
    )
    if truncate:
        return head[: len(head) // 2].rsplit("\n", 1)[0] + "\n"
    return head if headers_only else head + "\n" + body


@dataclass
class Rcpt:
    address: str
    status: str = "5.1.1"
    diagnostic: str = "smtp; 550 5.1.1 <{a}>: Recipient address rejected: User unknown"
    action: str = "failed"
    remote: str = "mx.example.org"
    final_field: str = "Final-Recipient: rfc822; {a}"
    extra: list[str] = field(default_factory=list)

    def block(self) -> str:
        lines = []
        if self.final_field:
            lines.append(self.final_field.format(a=self.address))
        lines.extend(x.format(a=self.address) for x in self.extra)
        if self.action:
            lines.append(f"Action: {self.action}")
        if self.status:
            lines.append(f"Status: {self.status}")
        if self.remote:
            lines.append(f"Remote-MTA: dns; {self.remote}")
        if self.diagnostic:
            lines.append("Diagnostic-Code: " + self.diagnostic.format(a=self.address))
        return "\n".join(lines)


def encode(text: str, cte: str, charset: str = "utf-8") -> str:
    if cte == "base64":
        raw = base64.b64encode(text.encode(charset, "replace")).decode()
        return "\n".join(raw[i : i + 76] for i in range(0, len(raw), 76)) + "\n"
    if cte == "quoted-printable":
        return quopri.encodestring(text.encode(charset, "replace")).decode()
    return text


def dsn(
    rcpts: list[Rcpt],
    *,
    n: int = 1,
    sender: str = "MAILER-DAEMON@mx.example.org (Mail Delivery System)",
    subject: str = "Undelivered Mail Returned to Sender",
    human: str = "This is the mail system at host mx.example.org.\n\n"
    "I'm sorry to have to inform you that your message could not\n"
    "be delivered to one or more recipients.\n",
    reporting_mta: str = "dns; mx.example.org",
    status_type: str = "message/delivery-status",
    status_cte: str = "7bit",
    original_type: str = "message/rfc822",
    original_text: str | None = None,
    human_charset: str = "us-ascii",
    human_cte: str = "7bit",
    extra_headers: str = "",
    to: str | None = None,
    blank_between: bool = True,
) -> str:
    first = rcpts[0].address if rcpts else "nobody@example.org"
    to = to or return_path(f"msg-{n:04d}@shop.example.com", first)
    per_message = f"Reporting-MTA: {reporting_mta}\nArrival-Date: {DATE}\n"
    joiner = "\n\n" if blank_between else "\n"
    status_body = per_message + "\n" + joiner.join(r.block() for r in rcpts) + "\n"
    if original_text is None:
        original_text = original(first, n=n, headers_only=original_type == "text/rfc822-headers")
    human_body = human.encode(human_charset, "replace").decode(human_charset)
    parts = [
        f"Content-Type: text/plain; charset={human_charset}\n"
        f"Content-Transfer-Encoding: {human_cte}\n\n"
        + (encode(human_body, human_cte, human_charset) if human_cte != "8bit" else human_body),
        f"Content-Type: {status_type}\nContent-Transfer-Encoding: {status_cte}\n\n"
        + encode(status_body, status_cte),
    ]
    if original_type:
        parts.append(f"Content-Type: {original_type}\n\n{original_text}")
    boundary = f"=_report_{n:04d}"
    body = "".join(f"--{boundary}\n{p}\n" for p in parts) + f"--{boundary}--\n"
    return (
        f"Return-Path: <>\nFrom: {sender}\nTo: {to}\nSubject: {subject}\nDate: {DATE}\n"
        f"Message-ID: <report-{n:04d}@mx.example.org>\n{extra_headers}MIME-Version: 1.0\n"
        f"Content-Type: multipart/report; report-type=delivery-status;\n"
        f'\tboundary="{boundary}"\n\n'
        "This is a MIME-encapsulated message.\n\n" + body
    )


def expect(kind: str, *recipients: tuple[str, str, str, bool, str]) -> dict[str, object]:
    """Label: (recipient, kind, reason, suppress, status) per recipient."""
    return {
        "kind": kind,
        "recipients": [
            {"recipient": r, "kind": k, "reason": why, "suppress": s, "status": st}
            for r, k, why, s, st in recipients
        ],
    }


def write(
    family: str, name: str, text: str | bytes, label: dict[str, object], crlf: bool = False
) -> None:
    """``text`` as str is written UTF-8; bytes (8-bit legacy charsets) as they are."""
    folder = FIXTURES / family
    folder.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8") if isinstance(text, str) else text
    if crlf:
        data = data.replace(b"\n", b"\r\n")
    (folder / f"{name}.eml").write_bytes(data)
    (folder / f"{name}.expected.json").write_text(json.dumps(label, indent=2) + "\n")
