"""Delivery end to end over real services: Redis queue -> sink -> status events in Kafka."""

from __future__ import annotations

from typing import Any

import pytest

from kibamail.contracts import BounceClass, TrafficKind
from kibamail.intake import submit
from kibamail.redis_keys import RedisKeys
from kibamail.report_tokens import return_path_address, return_path_ref
from kibamail.settings import Settings
from testing.testnet import SinkServer

from .helpers import StatusReader, make_message, wait_until

pytestmark = pytest.mark.integration


def _statuses(events: list[Any], message_id: str) -> list[str]:
    return [e.status.value for e in events if e.message_id == message_id]


def test_walking_skeleton_delivers_and_reports(
    running_mta: Settings, redis_client: Any, sink: SinkServer
) -> None:
    redis_client.set(RedisKeys.domain_ready("team-1", "sender.example"), "1")
    good = [make_message([f"user{i}@example.org"]) for i in range(10)]
    multi = make_message(["a@gmail.com", "b@example.net", "c@example.net"])
    permfail = make_message(["permfail@gmail.com"])
    tempfail = make_message(["tempfail@example.org"])
    for msg in [*good, multi, permfail, tempfail]:
        submit(redis_client, msg)
    # multi's recipients span two domains, so it arrives in two deliveries: wait for both.
    assert wait_until(
        lambda: (
            len(sink.delivered_counts()) >= 11
            and sink.delivered_counts().get(multi.message_id, 0) >= 3
        ),
        timeout=60,
    )
    counts = sink.delivered_counts()
    assert all(counts[m.message_id] == 1 for m in good)
    assert counts[multi.message_id] == 3

    reader = StatusReader(running_mta)
    try:
        events = reader.poll_until(
            lambda ev: (
                len(_statuses(ev, permfail.message_id)) >= 2
                and "deferred" in _statuses(ev, tempfail.message_id)
                # Only this test's messages: the topic also holds earlier tests' events.
                and all("delivered" in _statuses(ev, m.message_id) for m in good)
                and _statuses(ev, multi.message_id).count("delivered") >= 3
            ),
            timeout=60,
        )
    finally:
        reader.close()
    for msg in good:
        assert sorted(_statuses(events, msg.message_id)) == ["accepted", "delivered"]
    delivered = next(
        e for e in events if e.message_id == good[0].message_id and e.status == "delivered"
    )
    assert delivered.smtp_code == 250 and delivered.pool == "transactional"
    assert delivered.source_ip == "127.0.0.1" and delivered.recipient_domain == "example.org"
    # The envelope sender is the signed return path naming this message and recipient.
    secret = running_mta.mta.report_token_secret
    ref = return_path_ref(secret, good[0].message_id, good[0].recipients)
    verp = return_path_address(secret, ref, "bounces.kibamail.test")
    assert f"MAIL FROM:<{verp}>" in delivered.transcript
    bounce = next(
        e for e in events if e.message_id == permfail.message_id and e.status == "bounced"
    )
    assert bounce.smtp_code == 550 and bounce.bounce_class == BounceClass.HARD
    assert redis_client.sismember(RedisKeys.suppression("team-1"), "permfail@gmail.com")
    deferred = next(
        e for e in events if e.message_id == tempfail.message_id and e.status == "deferred"
    )
    assert deferred.smtp_code == 450 and deferred.attempt == 0
    # Event ids are deterministic: (message, recipient, status, attempt) -> one id.
    ids = [e.event_id for e in events if e.message_id == good[0].message_id]
    assert len(set(ids)) == 2


def test_held_until_domain_ready_then_delivered(
    running_mta: Settings, redis_client: Any, sink: SinkServer
) -> None:
    msg = make_message(["held@example.org"], sender="a@notready.example")
    # Another team verified the same name: that does not make it ready for team-1.
    redis_client.set(RedisKeys.domain_ready("team-other", "notready.example"), "1")
    submit(redis_client, msg)
    reader = StatusReader(running_mta)
    try:
        events = reader.poll_until(lambda ev: "held" in _statuses(ev, msg.message_id))
        held = next(e for e in events if e.message_id == msg.message_id and e.status == "held")
        assert "not verified" in held.reason
        assert sink.delivered_counts()[msg.message_id] == 0
        redis_client.set(RedisKeys.domain_ready("team-1", "notready.example"), "1")
        assert wait_until(lambda: sink.delivered_counts()[msg.message_id] == 1, timeout=15)
        events = reader.poll_until(lambda ev: "delivered" in _statuses(ev, msg.message_id))
        assert "delivered" in _statuses(events, msg.message_id)
    finally:
        reader.close()


def test_pools_never_share_ips(running_mta: Settings, redis_client: Any, sink: SinkServer) -> None:
    redis_client.set(RedisKeys.domain_ready("team-1", "sender.example"), "1")
    marketing = [make_message([f"m{i}@example.org"], kind=TrafficKind.MARKETING) for i in range(4)]
    transactional = [make_message([f"t{i}@example.org"]) for i in range(4)]
    for msg in marketing + transactional:
        submit(redis_client, msg)
    ids = {m.message_id for m in marketing + transactional}
    assert wait_until(lambda: ids <= set(sink.delivered_counts()), timeout=20)
    peers = {r.message_id: r.peer for r in sink.records if r.answer_code == 250}
    assert {peers[m.message_id] for m in marketing} <= {"127.0.0.2", "127.0.0.3"}
    assert {peers[m.message_id] for m in transactional} == {"127.0.0.1"}


def test_null_mx_and_nxdomain_bounce_without_connecting(
    running_mta: Settings, redis_client: Any, sink: SinkServer
) -> None:
    redis_client.set(RedisKeys.domain_ready("team-1", "sender.example"), "1")
    null = make_message(["x@nullmx.example"])
    gone = make_message(["x@gone.example"])
    submit(redis_client, null)
    submit(redis_client, gone)
    reader = StatusReader(running_mta)
    try:
        events = reader.poll_until(
            lambda ev: (
                "bounced" in _statuses(ev, null.message_id)
                and "bounced" in _statuses(ev, gone.message_id)
            )
        )
    finally:
        reader.close()
    null_event = next(
        e for e in events if e.message_id == null.message_id and e.status == "bounced"
    )
    assert null_event.smtp_code == 556 and null_event.bounce_class == BounceClass.HARD
    assert all(r.rcpt not in ("x@nullmx.example", "x@gone.example") for r in sink.records)


def test_paused_team_mail_is_held_then_delivered_after_unpause(
    running_mta: Settings, redis_client: Any, sink: SinkServer
) -> None:
    import json

    redis_client.set(RedisKeys.domain_ready("team-p", "sender.example"), "1")
    redis_client.set(RedisKeys.team_paused("team-p"), json.dumps({"reason": "complaint spike"}))
    msg = make_message(["p@example.org"], team="team-p")
    submit(redis_client, msg)
    reader = StatusReader(running_mta)
    try:
        events = reader.poll_until(
            lambda ev: "held" in {e.status for e in ev if e.message_id == msg.message_id}
        )
        held = next(e for e in events if e.message_id == msg.message_id and e.status == "held")
        assert "complaint spike" in held.reason
        assert sink.delivered_counts()[msg.message_id] == 0
        redis_client.delete(RedisKeys.team_paused("team-p"))
        assert wait_until(lambda: sink.delivered_counts()[msg.message_id] == 1, timeout=20)
    finally:
        reader.close()


@pytest.fixture
def sink(test_settings: Settings) -> Any:
    """This module's sink offers STARTTLS, like real MX hosts."""
    from testing.testnet import SinkConfig

    server = SinkServer(
        port=test_settings.mta.delivery_port,
        config=SinkConfig(seed=7, keep_messages=True, starttls=True),
    ).start()
    yield server
    server.stop()


def test_opportunistic_tls_is_used_when_offered(
    running_mta: Settings, redis_client: Any, sink: SinkServer
) -> None:
    redis_client.set(RedisKeys.domain_ready("team-1", "sender.example"), "1")
    msg = make_message(["tls@example.org"])
    submit(redis_client, msg)
    assert wait_until(lambda: sink.delivered_counts()[msg.message_id] == 1, timeout=20)
    assert msg.message_id in sink.handler.tls_message_ids
    reader = StatusReader(running_mta)
    try:
        events = reader.poll_until(lambda ev: "delivered" in _statuses(ev, msg.message_id))
    finally:
        reader.close()
    delivered = next(
        e for e in events if e.message_id == msg.message_id and e.status == "delivered"
    )
    assert "(STARTTLS)" in delivered.transcript


def test_internationalized_recipient_is_delivered_with_smtputf8(
    running_mta: Settings, redis_client: Any, sink: SinkServer
) -> None:
    """RFC 6531: a UTF-8 local part goes out as UTF-8 with MAIL ... SMTPUTF8."""
    redis_client.set(RedisKeys.domain_ready("team-1", "sender.example"), "1")
    msg = make_message(["jörg.müller@example.org"])
    submit(redis_client, msg)
    assert wait_until(lambda: sink.delivered_counts().get(msg.message_id, 0) == 1, timeout=20)
    assert [r.rcpt for r in sink.records if r.message_id == msg.message_id] == [
        "jörg.müller@example.org"
    ]


def test_a_dot_without_an_answer_is_not_mailed_twice(
    running_mta: Settings, redis_client: Any, sink: SinkServer
) -> None:
    """The sink takes the message and drops the connection before answering (RFC 1047):
    with the shipped ``in_doubt = "assume_delivered"`` the recipient is reported
    delivered with an "outcome unknown" text, never deferred and mailed again."""
    redis_client.set(RedisKeys.domain_ready("team-1", "sender.example"), "1")
    msg = make_message(["disconnect@example.org"])
    control = make_message(["after-drop@example.org"])
    submit(redis_client, msg)
    reader = StatusReader(running_mta)
    try:
        events = reader.poll_until(lambda ev: "delivered" in _statuses(ev, msg.message_id))
        submit(redis_client, control)  # queued behind it: the worker went on after the drop
        events = reader.poll_until(lambda ev: "delivered" in _statuses(ev, control.message_id))
    finally:
        reader.close()
    assert sorted(_statuses(events, msg.message_id)) == ["accepted", "delivered"]
    delivered = next(
        e for e in events if e.message_id == msg.message_id and e.status == "delivered"
    )
    assert delivered.smtp_code == 0 and "outcome unknown" in delivered.smtp_response
    # The sink saw the message once (answer_code 0: it dropped the connection).
    assert [r.answer_code for r in sink.records if r.message_id == msg.message_id] == [0]
    assert not any(redis_client.zcard(key) for key in RedisKeys.retry_schedules()), (
        "a retry job was scheduled for the in-doubt recipient"
    )
