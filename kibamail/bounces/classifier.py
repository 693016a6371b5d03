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
from functools import lru_cache

from .model import Action, Reason, Verdict
from .rule_patterns import Pattern, compile_pattern, fold
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

# Verdicts remembered (each key holds a diagnostic of at most _CACHED_TEXT_MAX characters,
# so the cache stays under ~20 MB); longer diagnostics are classified every time.
_CACHE_SIZE = 4096
_CACHED_TEXT_MAX = 4096

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
    """A rule ready to run (the first matching rule's ``id`` and ``reason`` decide)."""

    id: str
    reason: Reason
    text: tuple[Pattern, ...]  # any of them (none: no text matcher)
    hosts: tuple[Pattern, ...]  # any of them, on the remote host (else the text)
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


def _compile(rule: Rule) -> _Compiled:
    exact = frozenset(s for s in rule.status if s.count(".") == 2)
    prefixes = tuple(s + "." for s in rule.status if s.count(".") == 1)
    return _Compiled(
        id=rule.id,
        reason=rule.reason,
        text=tuple(compile_pattern(p) for p in rule.text),
        hosts=tuple(compile_pattern(p) for p in rule.hosts),
        statuses=exact,
        status_prefixes=prefixes,
        codes=frozenset(rule.codes),
    )


def _ascii_lower(text: str) -> str | None:
    return text.lower() if text.isascii() else None


class Classifier:
    """A taxonomy compiled once; :func:`classify` uses the shipped one.

    Verdicts are kept in a bounded LRU keyed by every input (real traffic repeats the
    same replies); a verdict is immutable, so sharing one is safe.
    """

    def __init__(self, taxonomy: Taxonomy, cache_size: int = _CACHE_SIZE) -> None:
        self.taxonomy = taxonomy
        self.rules = tuple(_compile(r) for r in taxonomy.rules)
        self._actions = {reason: entry.action for reason, entry in taxonomy.reasons.items()}
        self._status_codes = dict(taxonomy.status_codes)
        self._status_classes = dict(taxonomy.status_classes)
        self._reply_codes = dict(taxonomy.reply_codes)
        # Substring prefilter (rule_patterns.py): each text pattern is indexed by the
        # folded literals one of which any match of it contains, keyed by their first
        # three characters; a pattern runs only when one of its literals is in the folded
        # text, and only rules with such a pattern (or no text matcher) are tried.
        by_gram: dict[str, list[tuple[str, int, Pattern]]] = {}
        unfiltered: dict[int, list[Pattern]] = {}
        for index, rule in enumerate(self.rules):
            for pattern in rule.text:
                if pattern.literals is None:
                    unfiltered.setdefault(index, []).append(pattern)
                    continue
                for literal in pattern.literals:
                    by_gram.setdefault(literal[:3], []).append((literal, index, pattern))
        self._by_gram = {gram: tuple(entries) for gram, entries in by_gram.items()}
        self._grams = frozenset(by_gram)
        self._unfiltered = unfiltered
        self._textless = frozenset(i for i, r in enumerate(self.rules) if not r.text)
        self._cached = lru_cache(maxsize=cache_size)(self._classify)

    def verdict(self, reason: Reason, status: str, rule: str, temporary: bool) -> Verdict:
        action = self._actions[reason]
        if temporary and reason in SUPPRESS_WHEN_PERMANENT:
            action = Action.RETRY
        return Verdict(reason=reason, action=action, status=status, rule=rule)

    def _candidates(self, folded: str) -> dict[int, list[Pattern]]:
        """Rule index -> the text patterns of that rule the prefilter lets run."""
        found = {i: list(p) for i, p in self._unfiltered.items()}
        grams = self._grams.intersection({folded[i : i + 3] for i in range(len(folded) - 2)})
        by_gram = self._by_gram
        for gram in grams:
            for literal, index, pattern in by_gram[gram]:
                if literal in folded:
                    patterns = found.setdefault(index, [])
                    if pattern not in patterns:
                        patterns.append(pattern)
        return found

    def match_rule(
        self, diagnostic: str, status: str, code: int, remote_host: str
    ) -> _Compiled | None:
        """The first rule whose matchers all match."""
        low = _ascii_lower(diagnostic)
        candidates = self._candidates(low if low is not None else fold(diagnostic))
        x_status = _x_form(status)
        host_raw = remote_host or diagnostic
        host_low = _ascii_lower(host_raw)
        hosts_seen: dict[tuple[Pattern, ...], bool] = {}
        for index in sorted(self._textless.union(candidates)):
            rule = self.rules[index]
            if rule.text and not any(p.search(diagnostic, low) for p in candidates[index]):
                continue
            if rule.codes and code not in rule.codes:
                continue
            if not rule.status_ok(status, x_status):
                continue
            if rule.hosts:
                seen = hosts_seen.get(rule.hosts)
                if seen is None:
                    seen = bool(host_raw) and any(p.search(host_raw, host_low) for p in rule.hosts)
                    hosts_seen[rule.hosts] = seen
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
        """Reason and action of one outcome (see the module docstring for the order)."""
        args = (smtp_code, status, diagnostic, dsn_action, remote_host, reason_hint)
        if len(diagnostic) > _CACHED_TEXT_MAX:  # keeps the cache's memory bounded
            return self._classify(*args)
        return self._cached(*args)

    def _classify(
        self,
        smtp_code: int,
        status: str,
        diagnostic: str,
        dsn_action: str,
        remote_host: str,
        reason_hint: Reason | None,
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
        rule = self.match_rule(diagnostic, status, code, remote_host)
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
