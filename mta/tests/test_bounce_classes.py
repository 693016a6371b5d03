"""mta.bounces: the coarse classes the MTA's events carry, now from the one classifier."""

from __future__ import annotations

import pytest

from kibamail.bounces.model import Action, Reason, Verdict
from kibamail.contracts import BounceClass
from mta.bounces import bounce_class, classify, enhanced_code, verdict_for_reply

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("reason", "action", "expected"),
    [
        (Reason.USER_UNKNOWN, Action.SUPPRESS, BounceClass.HARD),
        (Reason.USER_UNKNOWN, Action.RETRY, BounceClass.SOFT),
        (Reason.MAILBOX_FULL, Action.RETRY, BounceClass.QUOTA),
        (Reason.BLOCKED, Action.FIX_OUR_SIDE, BounceClass.BLOCK),
        (Reason.BAD_REPUTATION, Action.FIX_OUR_SIDE, BounceClass.BLOCK),
        (Reason.REQUIRE_PTR, Action.FIX_OUR_SIDE, BounceClass.BLOCK),
        (Reason.RATE_LIMITED, Action.FIX_OUR_SIDE, BounceClass.BLOCK),
        (Reason.TOO_MANY_CONNECTIONS, Action.FIX_OUR_SIDE, BounceClass.BLOCK),
        (Reason.AUTH_FAILURE, Action.FIX_OUR_SIDE, BounceClass.POLICY),
        (Reason.SPAM_DETECTED, Action.FIX_OUR_SIDE, BounceClass.POLICY),
        (Reason.SENDER_REJECTED, Action.FIX_OUR_SIDE, BounceClass.POLICY),
        (Reason.NO_RELAYING, Action.FIX_OUR_SIDE, BounceClass.POLICY),
        (Reason.SYNTAX_ERROR, Action.FIX_OUR_SIDE, BounceClass.POLICY),
        (Reason.EXPIRED, Action.RETRY, BounceClass.SOFT),
        (Reason.ON_HOLD, Action.RETRY, BounceClass.SOFT),
        (Reason.DELIVERED, Action.RETRY, BounceClass.NONE),
    ],
)
def test_bounce_class_of_a_verdict(reason: Reason, action: Action, expected: BounceClass) -> None:
    assert bounce_class(Verdict(reason=reason, action=action)) == expected


def test_verdict_for_reply_reads_the_mx_host() -> None:
    text = "421 4.7.0 Try again later, closing connection."
    assert verdict_for_reply(421, text, "gmail-smtp-in.l.google.com").reason is Reason.BLOCKED
    assert verdict_for_reply(421, text).reason is Reason.ON_HOLD
    gone = verdict_for_reply(550, "550 5.1.1 <x@example.org>: User unknown", "mx.example.org")
    assert gone.suppress and gone.status == "5.1.1"


@pytest.mark.parametrize(
    ("code", "text", "expected"),
    [
        (550, "5.7.1 Requested action not taken: relay access denied", BounceClass.POLICY),
        (550, "no idea what happened", BounceClass.SOFT),  # unknown 5xx: never hard
        (554, "5.7.1 [BL21] the ip is in Spamhaus's list", BounceClass.BLOCK),
        (452, "4.2.2 The recipient's inbox is out of storage space", BounceClass.QUOTA),
        (556, "5.1.10 example.org has a null MX", BounceClass.HARD),
        (250, "2.0.0 OK", BounceClass.NONE),
    ],
)
def test_classify_keeps_its_signature(code: int, text: str, expected: BounceClass) -> None:
    assert classify(code, enhanced_code(text), text) == expected
