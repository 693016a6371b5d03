"""Suppression follows the classifier's action, on real Redis.

Synchronous outcomes (mta.commit): a permanent recipient-side bounce suppresses with its
reason recorded; a block (fix_our_side) never suppresses and counts in the team's
reputation inputs; retry reasons never suppress, but feed the documented soft-bounce
window (N soft bounces of one address for one team over D days, no delivery in between),
which a delivery resets. Times are passed in, never read from the clock.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
import pytest

from kibamail.bounces.taxonomy import taxonomy
from kibamail.contracts import MessageStatus, OutboundMessage
from kibamail.redis_keys import RedisKeys, slot_group
from kibamail.settings import Settings
from mta.commit import OutcomeRecorder, client_message_id
from mta.config import load_config
from mta.delivery import classified
from mta.outcomes import Outcome
from mta.queue import SubmissionQueue
from mta.soft_bounces import window

from .helpers import make_message

pytestmark = pytest.mark.integration

DAY = 86400.0
T0 = 1_800_000_000.0


def team() -> str:
    return f"team-{uuid.uuid4().hex[:8]}"


def run(redis: Any, queue: Any) -> None:
    pipe = redis.pipeline(transaction=True)
    queue(pipe)
    pipe.execute()


def test_the_window_is_the_documented_one() -> None:
    documented = taxonomy().soft_bounce_window
    soft = window()
    assert (soft.count, soft.days) == (documented.count, documented.days)
    assert soft.counts("mailbox_full", "retry")
    assert not soft.counts("blocked", "fix_our_side")  # about us: never the recipient's
    assert not soft.counts("user_unknown", "suppress")  # suppressed at once instead


def test_soft_bounces_over_the_window_suppress_with_the_reason(redis_client: Any) -> None:
    soft, t, rcpt = window(), team(), "full@example.org"
    span = soft.days * DAY
    times = [T0 + span * i / (soft.count - 1) for i in range(soft.count)]
    for when in times[:-1]:
        run(redis_client, lambda p, w=when: soft.queue_soft_bounce(p, t, rcpt, "mailbox_full", w))
    assert redis_client.scard(RedisKeys.suppression(t)) == 0
    counter = redis_client.hgetall(RedisKeys.soft_bounces(t, rcpt))
    assert int(counter[b"count"]) == soft.count - 1
    assert 0 < redis_client.ttl(RedisKeys.soft_bounces(t, rcpt)) <= soft.ttl_seconds
    run(redis_client, lambda p: soft.queue_soft_bounce(p, t, rcpt, "mailbox_full", times[-1]))
    assert redis_client.smembers(RedisKeys.suppression(t)) == {rcpt.encode()}
    why = orjson.loads(redis_client.hget(RedisKeys.suppression_reasons(t), rcpt))
    assert why["reason"] == "soft_bounce_window" and why["last_reason"] == "mailbox_full"
    assert not redis_client.exists(RedisKeys.soft_bounces(t, rcpt))


def test_many_soft_bounces_in_a_short_time_do_not_suppress(redis_client: Any) -> None:
    soft, t, rcpt = window(), team(), "burst@example.org"
    for i in range(soft.count * 3):
        run(redis_client, lambda p, i=i: soft.queue_soft_bounce(p, t, rcpt, "expired", T0 + i))
    assert redis_client.scard(RedisKeys.suppression(t)) == 0


def test_a_delivery_in_between_resets_the_count(redis_client: Any) -> None:
    soft, t, rcpt = window(), team(), "back@example.org"
    other = team()
    step = soft.days * DAY / (soft.count - 1)
    for i in range(soft.count - 1):
        for who in (t, other):
            run(
                redis_client,
                lambda p, i=i, who=who: soft.queue_soft_bounce(
                    p, who, rcpt, "system_error", T0 + i * step
                ),
            )
    run(redis_client, lambda p: soft.queue_delivered(p, t, rcpt))
    late = T0 + soft.days * DAY + 1
    run(redis_client, lambda p: soft.queue_soft_bounce(p, t, rcpt, "system_error", late))
    run(redis_client, lambda p: soft.queue_soft_bounce(p, other, rcpt, "system_error", late))
    assert redis_client.scard(RedisKeys.suppression(t)) == 0  # reset by the delivery
    assert redis_client.smembers(RedisKeys.suppression(other)) == {rcpt.encode()}  # per team


def _plan(
    settings: Settings, redis: Any, msg: OutboundMessage, outcomes: list[Outcome], attempt: int = 0
) -> None:
    """The outcome MULTI mta.commit builds for ``outcomes``, run on real Redis."""
    config = load_config(settings.mta.policy_file)
    recorder = OutcomeRecorder(redis, SubmissionQueue(redis, config.queue, "t"), config.queue)
    commands: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    msg = msg.model_copy(update={"attempt": attempt})
    recorder._plan(commands, slot_group(msg.team_id), b"0-1", msg, outcomes)
    pipe = redis.pipeline(transaction=True)
    for name, args, kwargs in commands:
        getattr(pipe, name)(*args, **kwargs)
    pipe.execute()


def _outcome(rcpt: str, code: int, text: str, mx: str = "") -> Outcome:
    status = MessageStatus.BOUNCED if code >= 500 else MessageStatus.DEFERRED
    if 200 <= code < 300:
        return Outcome(rcpt, MessageStatus.DELIVERED, code, text)
    return Outcome(rcpt, status, code, text, mx_host=mx, **classified(code, text, mx))


def test_synchronous_outcomes_suppress_only_where_the_verdict_says(
    test_settings: Settings, redis_client: Any
) -> None:
    t = team()
    rcpts = {
        "gone": "gone@example.org",
        "blocked": "blocked@example.org",
        "full": "full@example.org",
        "later": "later@example.org",
        "ok": "ok@example.org",
    }
    msg = make_message(list(rcpts.values()), team=t)
    outcomes = [
        _outcome(rcpts["gone"], 550, "5.1.1 <gone@example.org>: Recipient address rejected: "
                 "User unknown in virtual mailbox table"),
        _outcome(rcpts["blocked"], 554, "5.7.1 Service unavailable; Client host [192.0.2.1] "
                 "blocked using zen.spamhaus.org"),
        _outcome(rcpts["full"], 552, "5.2.2 <full@example.org>: mailbox full, over quota"),
        _outcome(rcpts["later"], 450, "4.2.0 <later@example.org>: Recipient address rejected: "
                 "Greylisted, try again later"),
        _outcome(rcpts["ok"], 250, "2.0.0 Ok: queued"),
    ]  # fmt: skip
    assert outcomes[0].bounce_action == "suppress"
    assert outcomes[1].bounce_action == "fix_our_side"
    assert outcomes[2].bounce_action == "retry" and outcomes[3].bounce_action == "retry"
    redis_client.hset(RedisKeys.soft_bounces(t, rcpts["ok"]), mapping={"count": 2, "first": T0})
    _plan(test_settings, redis_client, msg, outcomes)

    assert redis_client.smembers(RedisKeys.suppression(t)) == {rcpts["gone"].encode()}
    why = orjson.loads(redis_client.hget(RedisKeys.suppression_reasons(t), rcpts["gone"]))
    assert why["reason"] == outcomes[0].bounce_reason and why["source"] == "delivery"
    day = time.strftime("%Y-%m-%d", time.gmtime(time.time()))
    signals = redis_client.hgetall(RedisKeys.fix_our_side(t, day))
    assert signals == {outcomes[1].bounce_reason.encode(): b"1"}
    # The 5xx mailbox-full counts in the window; the greylisted 4xx will be retried.
    assert int(redis_client.hget(RedisKeys.soft_bounces(t, rcpts["full"]), "count")) == 1
    assert not redis_client.exists(RedisKeys.soft_bounces(t, rcpts["later"]))
    assert not redis_client.exists(RedisKeys.soft_bounces(t, rcpts["ok"]))  # delivered: reset


def test_giving_up_after_retries_is_expired_and_never_suppresses(
    test_settings: Settings, redis_client: Any
) -> None:
    t = team()
    msg = make_message(["slow@example.org"], team=t)
    old = msg.model_copy(update={"submitted_at": msg.submitted_at.replace(year=2020)})
    outcome = _outcome("slow@example.org", 451, "4.3.0 Temporary system problem, try later")
    _plan(test_settings, redis_client, old, [outcome], attempt=5)
    assert outcome.status == MessageStatus.EXPIRED
    assert (outcome.bounce_reason, outcome.bounce_action) == ("expired", "retry")
    assert redis_client.scard(RedisKeys.suppression(t)) == 0
    assert int(redis_client.hget(RedisKeys.soft_bounces(t, "slow@example.org"), "count")) == 1


def test_the_client_message_id_is_mapped_only_beside_the_platform_header() -> None:
    ours = b"Message-ID: <p1@x>\r\nSubject: s\r\n\r\nMessage-ID: <body@x>\r\n"
    assert client_message_id(ours) == ""
    theirs = b"Message-ID: <client@x>\r\nX-Kibamail-Message-ID: <p1@x>\r\n\r\nbody\r\n"
    assert client_message_id(theirs) == "client@x"
