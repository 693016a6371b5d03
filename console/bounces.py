"""`kibamail bounces parse|classify`: the production parser and classifier, for people and tests.

``parse`` prints one line per recipient per file (a message that is not a report prints one
line with an empty recipient). An unreadable file (missing, a directory, no permission,
over the inbound size cap) prints an error line and the run goes on; the exit status is
non-zero only when some input was unreadable, never because of what a report says.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from kibamail.mime_limits import MAX_REPORT_BYTES

FIELDS = (
    "file",
    "recipient",
    "kind",
    "reason",
    "action",
    "suppress",
    "status",
    "diagnostic",
    "smtp_code",
    "message_id",
    "platform_message_id",
    "return_path",
    "feedback_type",
    "format",
)


def _read(path: str) -> bytes:
    """The file's bytes; OSError (with a readable message) for anything unreadable."""
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"{path}: is a directory")
    size = target.stat().st_size
    if size > MAX_REPORT_BYTES:
        raise OSError(f"{path}: too large ({size} bytes, at most {MAX_REPORT_BYTES})")
    with target.open("rb") as handle:
        data = handle.read(MAX_REPORT_BYTES + 1)
    if len(data) > MAX_REPORT_BYTES:
        raise OSError(f"{path}: too large (more than {MAX_REPORT_BYTES} bytes)")
    return data


def rows(path: str, data: bytes) -> list[dict[str, Any]]:
    """One row per recipient of the report in ``data`` (at least one row)."""
    from kibamail.bounces.parse import parse_message

    report = parse_message(data)
    if not report.findings:
        # Not a report (or a bounce naming nobody): the address, if any, stays mailable.
        reason = "undetermined" if report.kind.value != "none" else ""
        return [
            {
                **dict.fromkeys(FIELDS, ""),
                "file": path,
                "kind": report.kind.value,
                "reason": reason,
                "action": "retry",
                "suppress": False,
                "smtp_code": 0,
                "format": report.source_format,
            }
        ]
    return [
        {
            "file": path,
            "recipient": f.recipient,
            "kind": f.kind.value,
            "reason": f.reason.value,
            "action": f.action.value,
            "suppress": f.suppress,
            "status": f.status,
            "diagnostic": f.diagnostic,
            "smtp_code": f.smtp_code,
            "message_id": f.message_id,
            "platform_message_id": f.platform_message_id,
            "return_path": f.return_path,
            "feedback_type": f.feedback_type,
            "format": f.source_format,
        }
        for f in report.findings
    ]


def _plain(row: dict[str, Any]) -> str:
    cells = [
        row["file"],
        row["recipient"] or "-",
        row["kind"],
        row["reason"] or "-",
        row["action"] or "-",
        "suppress" if row["suppress"] else "keep",
        row["status"] or "-",
        row["format"] or "-",
        " ".join(str(row["diagnostic"]).split())[:200] or "-",
    ]
    return "\t".join(str(cell) for cell in cells)


@click.group()
def bounces() -> None:
    """Read bounces, complaints and auto-replies the way the inbound handler does."""


@bounces.command("parse")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.argument("files", nargs=-1, required=True)
def parse(as_json: bool, files: tuple[str, ...]) -> None:
    """Print one line per recipient per FILE: kind, reason, action, status, ids."""
    failed = False
    for path in files:
        try:
            data = _read(path)
        except OSError as exc:
            failed = True
            message = f"{path}: {exc.strerror}" if exc.strerror else str(exc)
            click.echo(
                json.dumps({"file": path, "error": message})
                if as_json
                else f"{path}\terror\t{message}"
            )
            continue
        for row in rows(path, data):
            click.echo(json.dumps(row, ensure_ascii=False) if as_json else _plain(row))
    sys.exit(1 if failed else 0)


@bounces.command("classify")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.argument("replies", nargs=-1)
def classify_replies(as_json: bool, replies: tuple[str, ...]) -> None:
    """Classify SMTP replies (arguments, else one per line on stdin) as delivery would."""
    from kibamail.bounces.classifier import classify, enhanced_code
    from kibamail.bounces.rfc3464 import smtp_code_of

    lines = list(replies) or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    for reply in lines:
        verdict = classify(
            smtp_code=smtp_code_of(reply), status=enhanced_code(reply), diagnostic=reply
        )
        row = {
            "reply": reply,
            "reason": verdict.reason.value,
            "action": verdict.action.value,
            "suppress": verdict.suppress,
            "status": verdict.status,
            "rule": verdict.rule,
        }
        if as_json:
            click.echo(json.dumps(row, ensure_ascii=False))
        else:
            keep = "suppress" if verdict.suppress else "keep"
            cells = [verdict.reason.value, verdict.action.value, keep]
            click.echo("\t".join([*cells, verdict.status or "-", verdict.rule or "-", reply]))
