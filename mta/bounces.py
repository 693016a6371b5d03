"""The MTA's view of bounce classification: a thin layer over ``kibamail.bounces``.

The reason taxonomy and the one classifier live in ``kibamail.bounces.classifier``; this
module keeps the coarse ``BounceClass`` the status events and metrics still carry:
hard (suppress: only a permanent recipient-side failure), quota (mailbox full), block
(IP/reputation/rate), policy (authentication, content, sender, our protocol errors) and
soft (everything else, retried). An unknown 5xx is soft, never hard.
"""

from __future__ import annotations

from kibamail.bounces.classifier import classify as _classify
from kibamail.bounces.classifier import enhanced_code
from kibamail.bounces.model import Reason, Verdict
from kibamail.contracts import BounceClass

__all__ = ["bounce_class", "classify", "enhanced_code", "verdict_for_reply"]

_BLOCK = frozenset(
    {
        Reason.BLOCKED,
        Reason.BAD_REPUTATION,
        Reason.REQUIRE_PTR,
        Reason.RATE_LIMITED,
        Reason.TOO_MANY_CONNECTIONS,
    }
)
_POLICY = frozenset(
    {
        Reason.POLICY_VIOLATION,
        Reason.AUTH_FAILURE,
        Reason.SPAM_DETECTED,
        Reason.CONTENT_ERROR,
        Reason.VIRUS_DETECTED,
        Reason.SECURITY_ERROR,
        Reason.SYNTAX_ERROR,
        Reason.SENDER_REJECTED,
        Reason.NO_RELAYING,
        Reason.NOT_RFC_COMPLIANT,
    }
)
_NOT_FAILURES = frozenset({Reason.DELIVERED, Reason.AUTO_REPLY, Reason.NOT_SPAM})


def verdict_for_reply(code: int, text: str, mx_host: str = "") -> Verdict:
    """Reason and action of one SMTP reply met while delivering to ``mx_host``."""
    return _classify(smtp_code=code, diagnostic=text, remote_host=mx_host)


def bounce_class(verdict: Verdict) -> BounceClass:
    """The coarse class of a verdict (``hard`` exactly when it suppresses)."""
    if verdict.suppress:
        return BounceClass.HARD
    reason = verdict.reason
    if reason in _NOT_FAILURES:
        return BounceClass.NONE
    if reason is Reason.MAILBOX_FULL:
        return BounceClass.QUOTA
    if reason in _BLOCK:
        return BounceClass.BLOCK
    if reason in _POLICY:
        return BounceClass.POLICY
    return BounceClass.SOFT


def classify(code: int, enhanced: str, text: str) -> BounceClass:
    """Class of a non-2xx answer (kept for existing callers)."""
    if 200 <= code < 400:
        return BounceClass.NONE
    verdict = _classify(smtp_code=code, status=enhanced, diagnostic=text)
    return bounce_class(verdict)
