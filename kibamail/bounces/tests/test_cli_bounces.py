"""`kibamail bounces parse|classify` through the installed console script, as people run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kibamail.mime_limits import MAX_REPORT_BYTES

from .corpus import FIXTURES

pytestmark = pytest.mark.unit

SCRIPT = str(Path(sys.executable).parent / "kibamail")
REQUIRED = {
    "file", "recipient", "kind", "reason", "action", "suppress", "status", "diagnostic",
    "smtp_code", "message_id", "platform_message_id", "return_path", "feedback_type", "format",
}  # fmt: skip


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPT, "bounces", *args], capture_output=True, text=True, input=stdin, timeout=120
    )


def _fixture(family: str, name: str) -> str:
    return str(FIXTURES / family / f"{name}.eml")


def test_parse_json_one_line_per_recipient_with_every_field() -> None:
    path = _fixture("rfc3464", "multi_three_recipients")
    done = _run("parse", "--json", path)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["recipient"] for r in rows] == [
        "ann@example.org",
        "bob@example.net",
        "cy@example.com",
    ]
    assert all(set(r) >= REQUIRED and r["file"] == path for r in rows)
    ann, bob, cy = rows
    assert (ann["reason"], ann["action"], ann["suppress"], ann["status"]) == (
        "user_unknown", "suppress", True, "5.1.1",
    )  # fmt: skip
    assert ann["smtp_code"] == 550 and ann["platform_message_id"] == "kb_0201"
    assert ann["message_id"] == "msg-0201@shop.example.com"
    assert ann["return_path"].startswith("bounces+")
    assert (bob["reason"], bob["suppress"]) == ("mailbox_full", False)
    assert (cy["reason"], cy["action"], cy["suppress"]) == ("blocked", "fix_our_side", False)


def test_parse_every_kind_and_a_complaint_feedback_type() -> None:
    paths = [
        _fixture("arf", "feedback_not_spam"),
        _fixture("autoreply", "german_abwesenheit"),
        _fixture("notices", "postfix_delayed"),
        _fixture("notices", "dsn_relayed"),
        _fixture("none", "personal_reply"),
    ]
    done = _run("parse", "--json", *paths)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    kinds = [(r["kind"], r["reason"], r["suppress"]) for r in rows]
    assert kinds == [
        ("complaint", "not_spam", False),
        ("auto_reply", "auto_reply", False),
        ("delayed", "delayed", False),
        ("delivered", "delivered", False),
        ("none", "", False),
    ]
    assert rows[0]["feedback_type"] == "not-spam"
    assert rows[-1]["recipient"] == ""


def test_unreadable_inputs_print_an_error_line_and_only_they_fail_the_run(tmp_path: Path) -> None:
    huge = tmp_path / "huge.eml"
    with huge.open("wb") as handle:  # sparse: no 25 MB written
        handle.truncate(MAX_REPORT_BYTES + 1)
    good = _fixture("rfc3464", "postfix_unknown")
    missing = str(tmp_path / "missing.eml")
    done = _run("parse", "--json", missing, good, str(tmp_path), str(huge))
    assert done.returncode != 0
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["file"] for r in rows] == [missing, good, str(tmp_path), str(huge)]
    assert "No such file" in rows[0]["error"]
    assert rows[1]["kind"] == "bounce" and "error" not in rows[1]
    assert "directory" in rows[2]["error"]
    assert "too large" in rows[3]["error"]


def test_reports_alone_never_fail_the_run_and_plain_output_is_tab_separated() -> None:
    paths = [_fixture("none", "garbage_bytes"), _fixture("rfc3464", "postfix_unknown")]
    done = _run("parse", *paths)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split("\t")[:3] == [paths[0], "-", "none"]
    cells = lines[1].split("\t")
    assert cells[:6] == [paths[1], "unknown.postfix101@example.org", "bounce", "user_unknown",
                         "suppress", "suppress"]  # fmt: skip


def test_classify_arguments_and_stdin() -> None:
    done = _run("classify", "--json", "550 5.1.1 <a@example.org>: User unknown")
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)
    assert (row["reason"], row["action"], row["suppress"], row["status"]) == (
        "user_unknown", "suppress", True, "5.1.1",
    )  # fmt: skip
    assert row["rule"]
    piped = _run("classify", stdin="452 4.2.2 Mailbox full\n\n421 4.7.0 Try again later\n")
    assert piped.returncode == 0, piped.stderr
    lines = piped.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].split("\t")[:3] == ["mailbox_full", "retry", "keep"]
    assert all("suppress" not in line.split("\t")[2] for line in lines)
