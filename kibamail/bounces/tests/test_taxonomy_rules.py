"""A test per rule: every example of every taxonomy rule resolves through that rule."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from kibamail.bounces.classifier import classify, enhanced_code
from kibamail.bounces.model import Action, Reason
from kibamail.bounces.taxonomy import TAXONOMY, TAXONOMY_PATH, Taxonomy, load_taxonomy

pytestmark = pytest.mark.unit

_EXAMPLES = [
    pytest.param(rule.id, example, rule.example_host, id=f"{rule.id}-{n}")
    for rule in TAXONOMY.rules
    for n, example in enumerate(rule.examples)
]
_NOT_EXAMPLES = [
    pytest.param(rule.id, example, rule.example_host, id=f"{rule.id}-not-{n}")
    for rule in TAXONOMY.rules
    for n, example in enumerate(rule.not_examples)
]


@pytest.mark.parametrize(("rule_id", "reply", "host"), _EXAMPLES)
def test_every_example_resolves_through_its_rule(rule_id: str, reply: str, host: str) -> None:
    verdict = classify(diagnostic=reply, remote_host=host)
    assert verdict.rule == rule_id, f"{reply!r} -> {verdict}"


@pytest.mark.parametrize(("rule_id", "reply", "host"), _NOT_EXAMPLES)
def test_no_rule_takes_its_not_examples(rule_id: str, reply: str, host: str) -> None:
    assert classify(diagnostic=reply, remote_host=host).rule != rule_id


def test_every_reason_has_exactly_one_entry() -> None:
    assert set(TAXONOMY.reasons) == set(Reason)
    raw = tomllib.loads(TAXONOMY_PATH.read_text())
    assert set(raw["reasons"]) == {r.value for r in Reason}


def test_only_permanent_recipient_failures_and_complaints_suppress() -> None:
    suppressing = {r for r, e in TAXONOMY.reasons.items() if e.action is Action.SUPPRESS}
    assert suppressing == {
        Reason.USER_UNKNOWN,
        Reason.HOST_UNKNOWN,
        Reason.HAS_MOVED,
        Reason.NULL_MX,
        Reason.COMPLAINT,
    }
    for reason in (
        Reason.BLOCKED,
        Reason.AUTH_FAILURE,
        Reason.SENDER_REJECTED,
        Reason.SPAM_DETECTED,
    ):
        assert TAXONOMY.action(reason) is Action.FIX_OUR_SIDE


def test_soft_bounce_window_is_documented() -> None:
    window = TAXONOMY.soft_bounce_window
    assert window.count >= 3 and window.days >= 7
    assert Reason.MAILBOX_FULL in window.reasons
    assert not {Reason.BLOCKED, Reason.AUTH_FAILURE, Reason.COMPLAINT} & set(window.reasons)


@pytest.mark.parametrize(
    ("mutation", "message"),
    [
        (lambda t: t.replace('action = "suppress"', 'action = "drop"', 1), "action"),
        (lambda t: t.replace('reason = "user_unknown"', 'reason = "nobody_home"', 1), "reason"),
        (lambda t: t.replace("text = ['email account", "text = ['(unclosed", 1), "regex"),
        (lambda t: t.replace("status = ['x.7.505'", "status = ['7.505'", 1), "status"),
        (
            lambda t: t.replace(
                "[reasons.delayed]\naction", "[reasons.delayed]\nnoise = 1\naction", 1
            ),
            "extra",
        ),
        (lambda t: t.replace("[reasons.delayed]", "[reasons.not_a_reason]", 1), "reason"),
    ],
)
def test_a_bad_taxonomy_fails_loudly(tmp_path: Path, mutation: object, message: str) -> None:
    bad = tmp_path / "taxonomy.toml"
    bad.write_text(mutation(TAXONOMY_PATH.read_text()))  # type: ignore[operator]
    with pytest.raises(ValidationError):
        load_taxonomy(bad)


def test_the_shipped_file_loads_as_a_taxonomy() -> None:
    assert isinstance(load_taxonomy(), Taxonomy)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("550-5.1.1 The email account does not exist", "5.1.1"),
        ("421 4.7.0 [TSS04] Messages from 192.0.2.25 deferred - 4.16.55.1", "4.7.0"),
        ("sorry, no mailbox here by that name. (#5.1.1)", "5.1.1"),
        ("556 5.1.10 null MX", "5.1.10"),
        ("Client host 192.0.2.10 rejected", ""),
        ("", ""),
    ],
)
def test_enhanced_code(text: str, expected: str) -> None:
    assert enhanced_code(text) == expected
