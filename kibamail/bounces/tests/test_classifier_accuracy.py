"""The classifier against our own labelled SMTP replies (tests/data/smtp_replies.toml).

Issue 13's goals for the synchronous classifier: at least 97 % agreement on the
suppress / don't-suppress decision and no soft reply suppressed. On failure the test
prints, per labelled reason, what the classifier answered.
"""

from __future__ import annotations

import tomllib
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from kibamail.bounces.classifier import classify
from kibamail.bounces.model import Reason

pytestmark = pytest.mark.unit

DATA = Path(__file__).with_name("data") / "smtp_replies.toml"
REPLIES: list[dict[str, object]] = tomllib.loads(DATA.read_text())["reply"]


def _verdicts() -> list[tuple[dict[str, object], Reason, bool]]:
    out = []
    for reply in REPLIES:
        verdict = classify(
            smtp_code=int(reply["code"]),  # type: ignore[call-overload]
            diagnostic=str(reply["text"]),
            remote_host=str(reply.get("host", "")),
        )
        out.append((reply, verdict.reason, verdict.suppress))
    return out


def _confusion(results: list[tuple[dict[str, object], Reason, bool]]) -> str:
    table: dict[str, Counter[str]] = defaultdict(Counter)
    for reply, reason, _ in results:
        table[str(reply["reason"])][reason.value] += 1
    lines = []
    for label in sorted(table):
        answers = ", ".join(f"{r}={n}" for r, n in table[label].most_common())
        lines.append(f"  {label:22} -> {answers}")
    wrong = [
        f"  {'SUPPRESSED' if sup else 'kept'}: [{reply['reason']}] {reply['text']!s:.140}"
        for reply, _, sup in results
        if sup != reply["suppress"]
    ]
    return "per-reason confusion:\n" + "\n".join(lines) + "\ndisagreements:\n" + "\n".join(wrong)


def test_the_sample_set_is_large_and_varied() -> None:
    assert len(REPLIES) >= 400
    assert len({r["provider"] for r in REPLIES}) >= 40
    labels = {r["reason"] for r in REPLIES}
    assert labels <= {r.value for r in Reason}
    assert sum(1 for r in REPLIES if r["suppress"]) >= 80


def test_suppress_decision_agrees_and_no_soft_reply_is_suppressed() -> None:
    results = _verdicts()
    agree = sum(1 for reply, _, sup in results if sup == reply["suppress"])
    soft_suppressed = sum(1 for reply, _, sup in results if sup and not reply["suppress"])
    rate = agree / len(results)
    assert rate >= 0.97 and soft_suppressed == 0, (
        f"agreement {rate:.1%} ({agree}/{len(results)}), soft suppressed {soft_suppressed}\n"
        + _confusion(results)
    )
