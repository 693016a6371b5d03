"""Delivery-stage policies over real services: warm-up caps, suppression, expiry, bulk gate."""

from __future__ import annotations

import smtplib
import ssl
from pathlib import Path
from typing import Any

import pytest

from kibamail.contracts import TrafficKind
from kibamail.intake import submit
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from mta.credentials import create_smtp_credential
from testing.testnet import SinkServer

from .helpers import (
    StatusReader,
    make_message,
    retries,
    wait_until,
    with_policy,
    write_policy,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def mta_settings(test_settings: Settings, tmp_path: Path) -> Settings:
    return with_policy(test_settings, write_policy(tmp_path / "p.toml", warmup_cap=2, max_age=2))


def test_warmup_cap_moves_traffic_to_the_next_pool_ip(
    running_mta: Settings, redis_client: Any, sink: SinkServer
) -> None:
    redis_client.set(RedisKeys.domain_ready("team-1", "sender.example"), "1")
    msgs = [make_message([f"w{i}@example.org"], kind=TrafficKind.MARKETING) for i in range(6)]
    for msg in msgs:
        submit(redis_client, msg)
    ids = {m.message_id for m in msgs}
    assert wait_until(lambda: ids <= set(sink.delivered_counts()), timeout=20)
    peers = [r.peer for r in sink.records if r.message_id in ids and r.answer_code == 250]
    assert peers.count("127.0.0.2") == 2  # the warming IP got exactly its cap
    assert peers.count("127.0.0.3") == 4 and "127.0.0.1" not in peers


def test_suppressed_recipient_fails_without_delivery(
    running_mta: Settings, redis_client: Any, sink: SinkServer
) -> None:
    redis_client.set(RedisKeys.domain_ready("team-1", "sender.example"), "1")
    redis_client.sadd(RedisKeys.suppression("team-1"), "blocked@example.org")
    msg = make_message(["blocked@example.org", "fine@example.org"])
    submit(redis_client, msg)
    reader = StatusReader(running_mta)
    try:
        events = reader.poll_until(
            lambda ev: (
                {(e.recipient, e.status) for e in ev if e.message_id == msg.message_id}
                >= {("blocked@example.org", "failed"), ("fine@example.org", "delivered")}
            )
        )
    finally:
        reader.close()
    failed = next(e for e in events if e.message_id == msg.message_id and e.status == "failed")
    assert "suppression" in failed.reason
    assert [r.rcpt for r in sink.records if r.message_id == msg.message_id] == ["fine@example.org"]


def test_an_unsubscribe_stops_marketing_mail_only(
    running_mta: Settings, redis_client: Any, sink: SinkServer
) -> None:
    redis_client.set(RedisKeys.domain_ready("team-1", "sender.example"), "1")
    redis_client.sadd(RedisKeys.marketing_suppression("team-1"), "unsub@example.org")
    newsletter = make_message(["unsub@example.org"], kind=TrafficKind.MARKETING)
    receipt = make_message(["unsub@example.org"])
    submit(redis_client, newsletter)
    submit(redis_client, receipt)
    reader = StatusReader(running_mta)
    try:
        events = reader.poll_until(
            lambda ev: (
                {(e.message_id, e.status) for e in ev}
                >= {(newsletter.message_id, "failed"), (receipt.message_id, "delivered")}
            )
        )
    finally:
        reader.close()
    failed = next(
        e for e in events if e.message_id == newsletter.message_id and e.status == "failed"
    )
    assert "unsubscribed" in failed.reason
    delivered = {r.message_id for r in sink.records if r.answer_code == 250}
    assert receipt.message_id in delivered and newsletter.message_id not in delivered


def test_deferred_past_max_age_expires(running_mta: Settings, redis_client: Any) -> None:
    redis_client.set(RedisKeys.domain_ready("team-1", "sender.example"), "1")
    msg = make_message(["tempfail@example.org"])
    submit(redis_client, msg)
    reader = StatusReader(running_mta)
    try:
        events = reader.poll_until(
            lambda ev: "expired" in {e.status for e in ev if e.message_id == msg.message_id},
            timeout=40,
        )
    finally:
        reader.close()
    statuses = [e.status.value for e in events if e.message_id == msg.message_id]
    assert statuses[0] == "accepted" and "deferred" in statuses and statuses[-1] == "expired"
    attempts = sorted(e.attempt for e in events if e.message_id == msg.message_id)
    assert attempts[-1] >= 1  # retried with backoff before expiring
    assert wait_until(lambda: retries(redis_client) == 0, timeout=10)


def test_bulk_gate_refuses_bulk_scored_team(running_mta: Settings, redis_client: Any) -> None:
    redis_client.set(RedisKeys.domain_ready("team-bulk", "sender.example"), "1")
    credential = create_smtp_credential(redis_client, "team-bulk")
    redis_client.set(RedisKeys.reputation_throttle("bulk_score", "team-bulk"), "0.97")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    msg = make_message(["x@example.org"])
    with smtplib.SMTP("127.0.0.1", running_mta.mta.submission_port, timeout=15) as client:
        client.starttls(context=context)
        client.login(*credential)
        with pytest.raises(smtplib.SMTPDataError) as info:
            client.sendmail(msg.mail_from, msg.recipients, msg.data)
    assert info.value.smtp_code == 550 and b"broadcast" in info.value.smtp_error
