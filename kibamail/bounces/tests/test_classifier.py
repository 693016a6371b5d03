"""The classifier's order and its suppress rule, independent of any one rule's text."""

from __future__ import annotations

import pytest

from kibamail.bounces.classifier import classify
from kibamail.bounces.model import Action, Reason

pytestmark = pytest.mark.unit


def test_user_unknown_suppresses_only_when_permanent() -> None:
    text = "<x@example.org>: Recipient address rejected: User unknown in local recipient table"
    hard = classify(smtp_code=550, diagnostic="550 5.1.1 " + text)
    soft = classify(smtp_code=450, diagnostic="450 4.1.1 " + text)
    assert (hard.reason, hard.action, hard.status) == (
        Reason.USER_UNKNOWN,
        Action.SUPPRESS,
        "5.1.1",
    )
    assert (soft.reason, soft.action) == (Reason.USER_UNKNOWN, Action.RETRY)
    # A 4.x.x status in an asynchronous report is not permanent either.
    assert not classify(status="4.1.1", diagnostic=text).suppress
    # Action: failed with no code at all is permanent (qmail, Exim plain-text bounces).
    assert classify(diagnostic="Sorry, no mailbox here by that name.").suppress


@pytest.mark.parametrize(
    "text",
    ["550 something nobody wrote down", "554 Transaction failed", "550 Requested action not taken"],
)
def test_an_unknown_5xx_is_on_hold_never_user_unknown(text: str) -> None:
    verdict = classify(smtp_code=int(text[:3]), diagnostic=text)
    assert verdict.reason is Reason.ON_HOLD and verdict.action is Action.RETRY


def test_nothing_at_all_is_undetermined() -> None:
    assert classify().reason is Reason.UNDETERMINED


@pytest.mark.parametrize(
    ("action", "reason"),
    [
        ("delayed", Reason.DELAYED),
        ("delivered", Reason.DELIVERED),
        ("relayed", Reason.DELIVERED),
        ("expanded", Reason.DELIVERED),
    ],
)
def test_dsn_actions_that_are_not_failures(action: str, reason: Reason) -> None:
    verdict = classify(status="5.1.1", diagnostic="550 5.1.1 User unknown", dsn_action=action)
    assert verdict.reason is reason and not verdict.suppress


def test_a_2xx_reply_is_delivered() -> None:
    assert classify(smtp_code=250, diagnostic="250 2.0.0 OK queued").reason is Reason.DELIVERED


def test_an_asynchronous_temporary_failure_means_the_remote_mta_gave_up() -> None:
    verdict = classify(status="4.0.0", diagnostic="Some trouble")
    assert verdict.reason is Reason.EXPIRED and verdict.action is Action.RETRY
    verdict = classify(status="4.7.1", diagnostic="Greylisted, please try again later")
    assert verdict.reason is Reason.EXPIRED and verdict.action is Action.RETRY
    # ...but a synchronous 4xx with the same text is just on hold.
    assert classify(smtp_code=451, diagnostic="451 4.0.0 Some trouble").reason is Reason.ON_HOLD


def test_reason_hint_is_used_only_when_nothing_more_specific_matches() -> None:
    hinted = classify(diagnostic="the remote server said something odd", reason_hint=Reason.EXPIRED)
    assert hinted.reason is Reason.EXPIRED and hinted.rule == "hint"
    specific = classify(diagnostic="550 5.2.2 Mailbox full", reason_hint=Reason.EXPIRED)
    assert specific.reason is Reason.MAILBOX_FULL


def test_non_failure_hints_decide_at_once() -> None:
    complaint = classify(diagnostic="550 5.1.1 User unknown", reason_hint=Reason.COMPLAINT)
    assert complaint.reason is Reason.COMPLAINT and complaint.suppress
    assert not classify(reason_hint=Reason.AUTO_REPLY).suppress
    assert classify(reason_hint=Reason.NOT_SPAM).action is Action.RETRY


def test_provider_rules_need_the_provider() -> None:
    # Gmail's "try again later, closing connection" is a block at Gmail, a plain deferral elsewhere.
    text = "421 4.7.0 Try again later, closing connection."
    assert (
        classify(smtp_code=421, diagnostic=text, remote_host="gmail-smtp-in.l.google.com").reason
        is Reason.BLOCKED
    )
    assert (
        classify(smtp_code=421, diagnostic=text, remote_host="mx.example.org").reason
        is Reason.ON_HOLD
    )


def test_blocks_and_policy_are_our_side_even_with_a_5_1_1() -> None:
    verdict = classify(
        diagnostic="550 5.1.1 Client host [192.0.2.25] blocked using zen.spamhaus.org"
    )
    assert verdict.reason is Reason.BLOCKED and verdict.action is Action.FIX_OUR_SIDE


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("556 5.1.10 Recipient address has null MX", Reason.NULL_MX),
        ("554 5.7.27 Sender address has null MX", Reason.SENDER_REJECTED),
        ("550 5.3.2 System not accepting network messages", Reason.NULL_MX),
        ("550 5.7.17 Mailbox owner has changed", Reason.HAS_MOVED),
    ],
)
def test_status_table(text: str, reason: Reason) -> None:
    assert classify(smtp_code=int(text[:3]), diagnostic=text).reason is reason


def test_a_hint_that_states_the_cause_decides() -> None:
    # Biglobe's "User unknown" is its recipient filter; the format parser says so.
    verdict = classify(
        diagnostic="Mail Delivery Failed... User unknown", reason_hint=Reason.FILTERED
    )
    assert verdict.reason is Reason.FILTERED and not verdict.suppress
