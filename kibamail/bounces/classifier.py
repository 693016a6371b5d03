"""The one classifier: an SMTP reply or a report's failure -> reason and action.

Every path that meets a non-2xx outcome calls :func:`classify` (the MTA's synchronous
replies, the inbound report handler, ``kibamail bounces parse``). The order, and why:

1. the DSN ``Action`` (delayed, delivered/relayed/expanded) and non-failure hints
   (complaint, auto-reply) decide at once: they are not failures; so does a format
   parser's hint that states a cause (Biglobe's "User unknown" is its filter, Sisimai
   reads it the same way), except the weak ones (user/host unknown, expired, suspended,
   network, system, security, on hold), which the text may refine;
2. the taxonomy's rules in file order: providers reuse 5.7.1, 5.5.0, 550 and 554 for many
   causes, so the text (read together with the enhanced code and, for provider rules, the
   remote host) is the most specific evidence;
3. the exact enhanced status code, then a weak hint, then the status subject,
   then the reply code;
4. nothing recognisable: ``on_hold``/``undetermined`` (retry). An unknown 5xx is never
   ``user_unknown``: suppressing on a guess loses good contacts.

Suppression needs a permanent failure: the same ``user_unknown`` with a 4xx reply or a
4.x.x status only retries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from re import _constants as sre_constants  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import cast

from .model import Action, Reason, Verdict
from .taxonomy import SUPPRESS_WHEN_PERMANENT, TAXONOMY, Rule, Taxonomy

__all__ = ["classify", "enhanced_code"]

# "(#5.1.1)" as qmail/Exchange write it, then the code right after a reply code
# ("550-5.1.1", "550 5.1.1"), then any x.y.z not part of a longer dotted number (an IP,
# Yahoo's "4.16.55.1").
_ENHANCED_FORMS = (
    re.compile(r"\(#([245]\.\d{1,3}\.\d{1,3})\)"),
    re.compile(r"(?<![\d.])[245]\d\d[ -]#?([245]\.\d{1,3}\.\d{1,3})(?![\d]|\.\d)"),
    re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d]|\.\d)"),
)
_CODE_AT_START = re.compile(r"^\s*(?:[a-z][a-z-]*;\s*)?([245]\d\d)(?:[ -]|$)", re.IGNORECASE)
_CODE_SAID = re.compile(r"said:\s*([245]\d\d)\b", re.IGNORECASE)
_CODE_BEFORE_STATUS = re.compile(r"(?<![\d.])([245]\d\d)[ -]#?[245]\.\d{1,3}\.\d{1,3}")

_NOT_FAILURES = frozenset(
    {Reason.COMPLAINT, Reason.NOT_SPAM, Reason.AUTO_REPLY, Reason.DELIVERED, Reason.DELAYED}
)
_DELIVERED_ACTIONS = frozenset({"delivered", "relayed", "expanded"})
# Hints a format parser may give that the texts and codes can still refine (as the
# reference analyser re-reads them); any other hint states the cause and decides.
_WEAK_HINTS = frozenset(
    {
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
)


def enhanced_code(text: str) -> str:
    """The RFC 3463 enhanced status code in ``text`` ("5.1.1"), or ""."""
    if not text:
        return ""
    for form in _ENHANCED_FORMS:
        match = form.search(text)
        if match:
            return match.group(1)
    return ""


def _reply_code(text: str) -> int:
    for form in (_CODE_AT_START, _CODE_SAID, _CODE_BEFORE_STATUS):
        match = form.search(text)
        if match:
            return int(match.group(1))
    return 0


def _x_form(status: str) -> str:
    return "x" + status[1:] if status else ""


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A rule ready to run: one alternation per matcher kind."""

    id: str
    reason: Reason
    text: re.Pattern[str] | None
    hosts: re.Pattern[str] | None
    statuses: frozenset[str]  # "x.7.26", "5.7.26"
    status_prefixes: tuple[str, ...]  # "x.7.", "5.7."
    codes: frozenset[int]

    def status_ok(self, status: str, x_status: str) -> bool:
        if not (self.statuses or self.status_prefixes):
            return True
        if not status:
            return False
        if status in self.statuses or x_status in self.statuses:
            return True
        return any(status.startswith(p) or x_status.startswith(p) for p in self.status_prefixes)


def _lowered(pattern: str) -> str:
    """``pattern`` for lower-cased input: letters folded, escapes (``\\S``) kept."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            out.append(pattern[i : i + 2])
            i += 2
        else:
            out.append(pattern[i].lower())
            i += 1
    return "".join(out)


def _alternation(patterns: list[str]) -> re.Pattern[str] | None:
    # Matched against lower-cased text: Python's re is several times slower with
    # IGNORECASE on long alternations.
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{_lowered(p)})" for p in patterns))


def _requirement(items: list[tuple[object, object]]) -> list[str] | None:
    """Literals one of which every match of this sequence contains (None: unknown)."""
    options: list[list[str]] = []
    run = ""
    for op, arg in items:
        if op is sre_constants.LITERAL:
            run += chr(cast(int, arg))
            continue
        if len(run) >= 3:
            options.append([run])
        run = ""
        inner = None
        if op is sre_constants.SUBPATTERN:
            inner = _alternatives(list(arg[3]))  # type: ignore[index]
        elif op is sre_constants.BRANCH:  # a (?:a|b) group, inlined by the parser
            inner = _alternatives([(op, arg)])
        if inner is not None:
            options.append(inner)
    if len(run) >= 3:
        options.append([run])
    if not options:
        return None
    return max(options, key=lambda o: (min(len(x) for x in o), -len(o)))


def _alternatives(items: list[tuple[object, object]]) -> list[str] | None:
    if len(items) == 1 and items[0][0] is sre_constants.BRANCH:
        found: list[str] = []
        for alternative in items[0][1][1]:  # type: ignore[index]
            requirement = _requirement(list(alternative))
            if requirement is None:
                return None
            found.extend(requirement)
        return found
    return _requirement(items)


def _required_literals(pattern: str) -> list[str] | None:
    """Literals one of which any match of ``pattern`` contains (None: no such set).

    They feed a cheap substring prefilter ahead of the regexes.
    """
    return _alternatives(list(sre_parse.parse(_lowered(pattern))))


def _compile(rule: Rule) -> _Compiled:
    exact = frozenset(s for s in rule.status if s.count(".") == 2)
    prefixes = tuple(s + "." for s in rule.status if s.count(".") == 1)
    return _Compiled(
        id=rule.id,
        reason=rule.reason,
        text=_alternation(rule.text),
        hosts=_alternation(rule.hosts),
        statuses=exact,
        status_prefixes=prefixes,
        codes=frozenset(rule.codes),
    )


class Classifier:
    """A taxonomy compiled once; :func:`classify` uses the shipped one."""

    def __init__(self, taxonomy: Taxonomy) -> None:
        self.taxonomy = taxonomy
        self.rules = tuple(_compile(r) for r in taxonomy.rules)
        self._actions = {reason: entry.action for reason, entry in taxonomy.reasons.items()}
        self._status_codes = dict(taxonomy.status_codes)
        self._status_classes = dict(taxonomy.status_classes)
        self._reply_codes = dict(taxonomy.reply_codes)
        # Substring prefilter: each text pattern is indexed by the literals one of which
        # any match of it contains (keyed by their first three characters); a pattern
        # runs only when one of its literals is in the text, and only rules with a
        # running pattern (or no text matcher at all) are tried.
        by_gram: dict[str, list[tuple[str, int, re.Pattern[str]]]] = {}
        unfiltered: dict[int, list[re.Pattern[str]]] = {}
        for index, rule in enumerate(taxonomy.rules):
            for pattern in rule.text:
                compiled = re.compile(_lowered(pattern))
                literals = _required_literals(pattern)
                if literals is None:
                    unfiltered.setdefault(index, []).append(compiled)
                    continue
                for literal in literals:
                    by_gram.setdefault(literal[:3], []).append((literal, index, compiled))
        self._by_gram = by_gram
        self._unfiltered = unfiltered
        self._textless = frozenset(i for i, r in enumerate(self.rules) if r.text is None)

    def verdict(self, reason: Reason, status: str, rule: str, temporary: bool) -> Verdict:
        action = self._actions[reason]
        if temporary and reason in SUPPRESS_WHEN_PERMANENT:
            action = Action.RETRY
        return Verdict(reason=reason, action=action, status=status, rule=rule)

    def _candidates(self, low: str) -> dict[int, list[re.Pattern[str]]]:
        found: dict[int, list[re.Pattern[str]]] = {i: list(p) for i, p in self._unfiltered.items()}
        by_gram = self._by_gram
        for gram in {low[i : i + 3] for i in range(len(low) - 2)}:
            for literal, index, pattern in by_gram.get(gram, ()):
                if literal in low:
                    found.setdefault(index, []).append(pattern)
        return found

    def match_rule(
        self, diagnostic: str, status: str, code: int, remote_host: str
    ) -> _Compiled | None:
        """The first rule whose matchers all match."""
        low = diagnostic.lower()
        candidates = self._candidates(low) if low else {}
        x_status = _x_form(status)
        host_target = remote_host or low
        hosts_seen: dict[str, bool] = {}
        for index in sorted(self._textless.union(candidates)):
            rule = self.rules[index]
            if rule.text is not None and not any(p.search(low) for p in candidates[index]):
                continue
            if rule.codes and code not in rule.codes:
                continue
            if not rule.status_ok(status, x_status):
                continue
            if rule.hosts is not None:
                seen = hosts_seen.get(rule.hosts.pattern)
                if seen is None:
                    seen = bool(host_target) and rule.hosts.search(host_target) is not None
                    hosts_seen[rule.hosts.pattern] = seen
                if not seen:
                    continue
            return rule
        return None

    def classify(
        self,
        *,
        smtp_code: int = 0,
        status: str = "",
        diagnostic: str = "",
        dsn_action: str = "failed",
        remote_host: str = "",
        reason_hint: Reason | None = None,
    ) -> Verdict:
        action = (dsn_action or "failed").strip().lower()
        status = enhanced_code(status) or enhanced_code(diagnostic)
        if action.startswith("delayed"):
            return self.verdict(Reason.DELAYED, status, "dsn_action", True)
        if action in _DELIVERED_ACTIONS:
            return self.verdict(Reason.DELIVERED, status, "dsn_action", True)
        if reason_hint in _NOT_FAILURES:
            assert reason_hint is not None
            return self.verdict(reason_hint, status, "hint", False)
        code = smtp_code or _reply_code(diagnostic)
        if (200 <= code < 300 and status[:1] not in ("4", "5")) or status.startswith("2."):
            return self.verdict(Reason.DELIVERED, status, "code", True)
        temporary = 400 <= code < 500 or status.startswith("4.")
        if reason_hint is not None and reason_hint not in _WEAK_HINTS:
            return self.verdict(reason_hint, status, "hint", temporary)
        # An asynchronous report (no reply code of its own) that failed on a temporary
        # code: the remote MTA gave up retrying.
        gave_up = not smtp_code and status.startswith("4.") and action == "failed"
        rule = self.match_rule(diagnostic, status, code, remote_host.lower())
        if rule is not None:
            if gave_up and rule.reason is Reason.ON_HOLD:
                return self.verdict(Reason.EXPIRED, status, rule.id, True)
            return self.verdict(rule.reason, status, rule.id, temporary)
        x_status = _x_form(status)
        by_status = self._status_codes.get(x_status) or self._status_codes.get(status)
        if by_status is not None:
            return self.verdict(by_status, status, f"status:{x_status}", temporary)
        if reason_hint is not None:
            return self.verdict(reason_hint, status, "hint", temporary)
        if gave_up:
            return self.verdict(Reason.EXPIRED, status, "async_temporary", True)
        if status:
            subject = x_status.rsplit(".", 1)[0]
            by_class = self._status_classes.get(subject)
            if by_class is not None:
                return self.verdict(by_class, status, f"status:{subject}", temporary)
        by_code = self._reply_codes.get(code)
        if by_code is not None:
            return self.verdict(by_code, status, f"code:{code}", temporary)
        fallback = Reason.ON_HOLD if diagnostic.strip() else Reason.UNDETERMINED
        return self.verdict(fallback, status, "fallback", temporary)


CLASSIFIER = Classifier(TAXONOMY)


def classify(
    *,
    smtp_code: int = 0,
    status: str = "",
    diagnostic: str = "",
    dsn_action: str = "failed",
    remote_host: str = "",
    reason_hint: Reason | None = None,
) -> Verdict:
    """Reason and action of one outcome (see the module docstring for the order)."""
    return CLASSIFIER.classify(
        smtp_code=smtp_code,
        status=status,
        diagnostic=diagnostic,
        dsn_action=dsn_action,
        remote_host=remote_host,
        reason_hint=reason_hint,
    )
