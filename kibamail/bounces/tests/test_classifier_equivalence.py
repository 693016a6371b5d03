"""The fast classifier gives exactly the answers of the documented one.

``classifier.py`` is built for speed (a literal prefilter, lower-cased matching, a verdict
cache). ``_reference`` below is the taxonomy read literally: the steps of the classifier's
docstring, and the rules tried one by one in file order, every pattern a case-insensitive
regex searched in the raw text. Both must give the same Verdict (reason, action, status,
rule) on every labelled SMTP reply, every rule's examples and not-examples, every failure
of the fixture corpus, and on generated replies.
"""

from __future__ import annotations

import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kibamail.bounces import parse
from kibamail.bounces.classifier import CLASSIFIER, Classifier, classify
from kibamail.bounces.model import Action, Reason, Verdict
from kibamail.bounces.rule_patterns import compile_pattern, fold, required_literals
from kibamail.bounces.taxonomy import SUPPRESS_WHEN_PERMANENT, TAXONOMY, Rule, Taxonomy
from kibamail.bounces.tests.corpus import load_fixtures

pytestmark = pytest.mark.unit

REPLIES: list[dict[str, Any]] = tomllib.loads(
    (Path(__file__).with_name("data") / "smtp_replies.toml").read_text()
)["reply"]
UNCACHED = Classifier(TAXONOMY, cache_size=0)

# --- the reference: the documented semantics, nothing clever --------------------------

_ENHANCED = (
    r"\(#([245]\.\d{1,3}\.\d{1,3})\)",
    r"(?<![\d.])[245]\d\d[ -]#?([245]\.\d{1,3}\.\d{1,3})(?![\d]|\.\d)",
    r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d]|\.\d)",
)
_REPLY_CODE = (
    r"^\s*(?:[a-z][a-z-]*;\s*)?([245]\d\d)(?:[ -]|$)",
    r"said:\s*([245]\d\d)\b",
    r"(?<![\d.])([245]\d\d)[ -]#?[245]\.\d{1,3}\.\d{1,3}",
)
_NOT_FAILURES = {
    Reason.COMPLAINT,
    Reason.NOT_SPAM,
    Reason.AUTO_REPLY,
    Reason.DELIVERED,
    Reason.DELAYED,
}
_WEAK = {
    Reason.USER_UNKNOWN,
    Reason.HOST_UNKNOWN,
    Reason.EXPIRED,
    Reason.SUSPENDED,
    Reason.NETWORK_ERROR,
    Reason.SYSTEM_ERROR,
    Reason.SECURITY_ERROR,
    Reason.ON_HOLD,
    Reason.UNDETERMINED,
}


def _enhanced(text: str) -> str:
    for form in _ENHANCED:
        match = re.search(form, text or "")
        if match:
            return match.group(1)
    return ""


def _reply_code(text: str) -> int:
    for n, form in enumerate(_REPLY_CODE):
        match = re.search(form, text, re.IGNORECASE if n < 2 else 0)
        if match:
            return int(match.group(1))
    return 0


def _status_matches(wanted: str, status: str) -> bool:
    if not status:
        return False
    for candidate in (status, "x" + status[1:]):
        if candidate == wanted or (wanted.count(".") == 1 and candidate.startswith(wanted + ".")):
            return True
    return False


@cache
def _rx(pattern: str) -> re.Pattern[str]:
    """``re.compile`` remembered (the taxonomy has more patterns than ``re``'s own cache)."""
    return re.compile(pattern, re.IGNORECASE)


def _rule_matches(rule: Rule, text: str, status: str, code: int, host: str) -> bool:
    if rule.text and not any(_rx(p).search(text) for p in rule.text):
        return False
    if rule.codes and code not in rule.codes:
        return False
    if rule.status and not any(_status_matches(s, status) for s in rule.status):
        return False
    target = host or text
    return not rule.hosts or any(_rx(h).search(target) for h in rule.hosts)


def _reference(
    taxonomy: Taxonomy,
    *,
    smtp_code: int = 0,
    status: str = "",
    diagnostic: str = "",
    dsn_action: str = "failed",
    remote_host: str = "",
    reason_hint: Reason | None = None,
) -> Verdict:
    def verdict(reason: Reason, rule: str, temporary: bool) -> Verdict:
        action = taxonomy.reasons[reason].action
        if temporary and reason in SUPPRESS_WHEN_PERMANENT:
            action = Action.RETRY
        return Verdict(reason=reason, action=action, status=status, rule=rule)

    action = (dsn_action or "failed").strip().lower()
    status = _enhanced(status) or _enhanced(diagnostic)
    if action.startswith("delayed"):
        return verdict(Reason.DELAYED, "dsn_action", True)
    if action in ("delivered", "relayed", "expanded"):
        return verdict(Reason.DELIVERED, "dsn_action", True)
    if reason_hint is not None and reason_hint in _NOT_FAILURES:
        return verdict(reason_hint, "hint", False)
    code = smtp_code or _reply_code(diagnostic)
    if (200 <= code < 300 and status[:1] not in ("4", "5")) or status.startswith("2."):
        return verdict(Reason.DELIVERED, "code", True)
    temporary = 400 <= code < 500 or status.startswith("4.")
    if reason_hint is not None and reason_hint not in _WEAK:
        return verdict(reason_hint, "hint", temporary)
    gave_up = not smtp_code and status.startswith("4.") and action == "failed"
    for rule in taxonomy.rules:  # in file order; the first whose matchers all match
        if _rule_matches(rule, diagnostic, status, code, remote_host):
            if gave_up and rule.reason is Reason.ON_HOLD:
                return verdict(Reason.EXPIRED, rule.id, True)
            return verdict(rule.reason, rule.id, temporary)
    x_status = "x" + status[1:] if status else ""
    by_status = taxonomy.status_codes.get(x_status) or taxonomy.status_codes.get(status)
    if by_status is not None:
        return verdict(by_status, f"status:{x_status}", temporary)
    if reason_hint is not None:
        return verdict(reason_hint, "hint", temporary)
    if gave_up:
        return verdict(Reason.EXPIRED, "async_temporary", True)
    if status:
        subject = x_status.rsplit(".", 1)[0]
        if subject in taxonomy.status_classes:
            return verdict(taxonomy.status_classes[subject], f"status:{subject}", temporary)
    if code in taxonomy.reply_codes:
        return verdict(taxonomy.reply_codes[code], f"code:{code}", temporary)
    return verdict(
        Reason.ON_HOLD if diagnostic.strip() else Reason.UNDETERMINED, "fallback", temporary
    )


def _assert_same(**kwargs: Any) -> None:
    want = _reference(TAXONOMY, **kwargs)
    assert classify(**kwargs) == want, kwargs
    assert classify(**kwargs) == want, kwargs  # the second answer comes from the cache
    assert UNCACHED.classify(**kwargs) == want, kwargs


# --- the inputs -------------------------------------------------------------------------


@pytest.mark.parametrize("reply", REPLIES, ids=lambda r: f"{r['provider']}-{r['reason']}")
def test_labelled_smtp_replies(reply: dict[str, Any]) -> None:
    host = str(reply.get("host", ""))
    _assert_same(smtp_code=int(reply["code"]), diagnostic=reply["text"], remote_host=host)
    _assert_same(diagnostic=reply["text"])  # as an asynchronous report states it
    _assert_same(diagnostic=reply["text"].upper(), remote_host=host.upper())


@pytest.mark.parametrize("rule", TAXONOMY.rules, ids=lambda r: r.id)
def test_rule_examples_and_not_examples(rule: Rule) -> None:
    for text in rule.examples + rule.not_examples:
        _assert_same(diagnostic=text, remote_host=rule.example_host)
        _assert_same(diagnostic=text)
        _assert_same(smtp_code=451, status="4.0.0", diagnostic=text.swapcase())


def test_every_failure_of_the_fixture_corpus(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []

    def spy(**kwargs: Any) -> Verdict:
        seen.append(kwargs)
        return classify(**kwargs)

    monkeypatch.setattr(parse, "classify", spy)
    for fixture in load_fixtures():
        parse.parse_message(fixture.data)
    assert len(seen) >= 400
    for kwargs in seen:
        _assert_same(**kwargs)


_WORDS = sorted(
    {word for rule in TAXONOMY.rules for text in rule.examples for word in text.split()}
    | {lit for r in TAXONOMY.rules for p in r.text for lit in required_literals(p) or ()}
)
_HOSTS = sorted({r.example_host for r in TAXONOMY.rules if r.example_host})
# Characters IGNORECASE and str.lower() treat differently, and some non-ASCII letters.
_ODD = [
    "İ",
    "\u0131",
    "\u017f",
    "\u212a",
    "µ",
    "Σ",
    "ς",
    "ß",
    "ü",
    "Ü",
    "ó",
    "я",
    "Я",
    "\u0345",
    "ﬅ",
]
_STATUSES = sorted(
    {s.replace("x", d) for r in TAXONOMY.rules for s in r.status for d in "45"}
    | {s.replace("x", "5") for s in TAXONOMY.status_codes}
)


def _cased(text: str, how: int) -> str:
    return (text, text.upper(), text.lower(), text.swapcase(), text.title())[how]


# Letters IGNORECASE matches although str.lower() does not make them the ASCII letter:
# dotted capital I, dotless i, long s, Kelvin sign.
_TWINS = {"i": ["\u0130", "\u0131"], "s": ["\u017f"], "k": ["\u212a"]}


def _odd_spelling(word: str, pick: int) -> str:
    """``word`` with its letters i, s and k written as their non-ASCII twins."""
    return "".join(_TWINS[c][pick % len(_TWINS[c])] if c in _TWINS else c for c in word)


_piece = st.one_of(
    st.sampled_from(_WORDS),
    st.builds(_odd_spelling, st.sampled_from(_WORDS), st.integers(0, 1)),
    st.sampled_from(_ODD),
    st.text(max_size=12),
    st.sampled_from(["550", "4.7.1", "5.1.1 ", "(#5.1.1)", "said: 421", "gsmtp", " - ", "\n"]),
)
_text = st.builds(
    lambda pieces, seps, how: _cased(
        "".join(p + s for p, s in zip(pieces, seps, strict=False)), how
    ),
    st.lists(_piece, max_size=14),
    st.lists(st.sampled_from([" ", "", ": ", "-", "\n"]), min_size=14, max_size=14),
    st.integers(0, 4),
)


@settings(
    max_examples=600, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    code=st.one_of(
        st.sampled_from([0, 250, 421, 450, 451, 452, 521, 550, 552, 554, 556]),
        st.integers(200, 599),
    ),
    status=st.one_of(
        st.just(""),
        st.sampled_from(_STATUSES),
        st.from_regex(r"[245]\.\d{1,3}(\.\d{1,3})?", fullmatch=True),
        st.text(max_size=8),
    ),
    text=_text,
    action=st.sampled_from(
        ["failed", "", "Failed ", "delayed", "delivered", "relayed", "expanded", "x"]
    ),
    host=st.one_of(
        st.just(""),
        st.sampled_from(_HOSTS),
        st.builds(_cased, st.sampled_from(_HOSTS), st.integers(0, 4)),
        st.text(max_size=10),
    ),
    hint=st.one_of(st.none(), st.sampled_from(list(Reason))),
)
def test_generated_replies(
    code: int, status: str, text: str, action: str, host: str, hint: Reason | None
) -> None:
    _assert_same(
        smtp_code=code,
        status=status,
        diagnostic=text,
        dsn_action=action,
        remote_host=host,
        reason_hint=hint,
    )
    _assert_same(status=status, diagnostic=text, remote_host=host, reason_hint=hint)


# --- the two speed-ups, pattern by pattern ----------------------------------------------


def test_fold_is_lower_for_ascii_and_keeps_the_length() -> None:
    assert all(fold(chr(c)) == chr(c).lower() for c in range(128))
    for odd in _ODD:
        assert len(fold(odd * 3)) == 3


@pytest.mark.parametrize(
    "pattern",
    [
        r"[0-Z]x",
        r"\x41bc",
        r"(?-i:ABC)",
        r"(a)\1",
        r"(?i)abc",
        r"[!-~]{3}",
        r"(?P<n>ab)c",
        r"\N{LATIN SMALL LETTER A}bc",
    ],
)
def test_patterns_that_lowering_would_change_run_as_written(pattern: str) -> None:
    compiled = compile_pattern(pattern)
    assert compiled.lowered is None
    for text in ["[X", "Ab", "ABC", "abc", "aA", "a\\", "AB}", "`x", "Abc", "ABCD"]:
        low = text.lower() if text.isascii() else None
        assert compiled.search(text, low) is bool(re.search(pattern, text, re.IGNORECASE))


_PATTERNS = sorted({p for r in TAXONOMY.rules for p in r.text + r.hosts})


@settings(max_examples=300, deadline=None, database=None)
@given(pattern=st.sampled_from(_PATTERNS), text=_text)
def test_each_taxonomy_pattern_is_exact_and_its_prefilter_sound(pattern: str, text: str) -> None:
    compiled = compile_pattern(pattern)
    expected = _rx(pattern).search(text) is not None
    assert compiled.search(text, text.lower() if text.isascii() else None) is expected
    if expected and compiled.literals is not None:
        assert any(literal in fold(text) for literal in compiled.literals)


def test_the_examples_are_what_the_shipped_classifier_answers() -> None:
    # The cache is keyed by every input: a cached answer never leaks across inputs.
    rule = TAXONOMY.rules[0]
    first = CLASSIFIER.classify(diagnostic=rule.examples[0], remote_host=rule.example_host)
    other = CLASSIFIER.classify(diagnostic=rule.examples[0], remote_host="mx.example.net")
    assert first.rule == rule.id and other.rule != rule.id
