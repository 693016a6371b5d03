"""DKIM signatures verified by dkimpy against the loopback DNS; the event outbox survives
a Kafka outage; SMTP credentials; DSN/ARF reports recorded from the inbound listener."""

from __future__ import annotations

import asyncio
import smtplib
import uuid
from typing import Any

import dkim
import dns.resolver
import pytest

from kibamail.contracts import MessageMapping, MessageStatus, Topic, serialize
from kibamail.intake import submit
from kibamail.redis_keys import RedisKeys, slot_group
from kibamail.settings import KafkaSettings, Settings
from mta.commit import record_sent
from mta.credentials import (
    CredentialVerifier,
    create_smtp_credential,
    list_smtp_credentials,
    revoke_smtp_credential,
    verify,
)
from mta.dkim_signing import generate_ed25519_key, generate_rsa_key, store_dkim_key
from mta.events import OutboxPublisher, add_to_outbox, make_status_event
from testing.testnet import DnsServer, SinkServer, Zone

from .helpers import StatusReader, make_message, outboxed, wait_until
from .test_units import ARF, DSN

pytestmark = pytest.mark.integration

RSA_PEM, RSA_TXT = generate_rsa_key(2048)
ED_SEED, ED_TXT = generate_ed25519_key()


@pytest.fixture
def zone() -> Zone:
    zone = Zone()
    zone.add("rsa1._domainkey.rsa.example", "TXT", RSA_TXT)
    zone.add("ed1._domainkey.ed.example", "TXT", ED_TXT)
    return zone


def _dnsfunc(server: DnsServer) -> Any:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = server.port

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        answer = resolver.resolve(name.decode().rstrip("."), "TXT", lifetime=timeout)
        return b"".join(answer[0].strings)

    return lookup


def test_dkim_rsa_and_ed25519_signatures_verify_against_loopback_dns(
    running_mta: Settings, redis_client: Any, sink: SinkServer, dns_server: DnsServer
) -> None:
    store_dkim_key(redis_client, "team-1", "rsa.example", "rsa1", "rsa-sha256", RSA_PEM)
    store_dkim_key(redis_client, "team-1", "ed.example", "ed1", "ed25519-sha256", ED_SEED)
    for domain in ("rsa.example", "ed.example", "unsigned.example"):
        redis_client.set(RedisKeys.domain_ready("team-1", domain), "1")
    rsa = make_message(["a@example.org"], sender="n@rsa.example")
    ed = make_message(["b@example.org"], sender="n@ed.example")
    plain = make_message(["c@example.org"], sender="n@unsigned.example")
    for msg in (rsa, ed, plain):
        submit(redis_client, msg)
    ids = {rsa.message_id, ed.message_id, plain.message_id}
    assert wait_until(lambda: ids <= set(sink.handler.messages), timeout=20)
    lookup = _dnsfunc(dns_server)
    signed_rsa = sink.handler.messages[rsa.message_id]
    signed_ed = sink.handler.messages[ed.message_id]
    assert b"a=rsa-sha256" in signed_rsa and b"a=ed25519-sha256" in signed_ed
    assert dkim.verify(signed_rsa, dnsfunc=lookup)
    assert dkim.verify(signed_ed, dnsfunc=lookup)
    tampered = signed_rsa.replace(b"Hello there.", b"Hello thief.")
    assert not dkim.verify(tampered, dnsfunc=lookup)
    assert b"DKIM-Signature" not in sink.handler.messages[plain.message_id]


async def test_outbox_keeps_events_while_kafka_is_down(
    test_settings: Settings, redis_client: Any, kafka_service: str
) -> None:
    from kibamail.clients import async_redis_client
    from local_stack.stack import free_port

    message_id = f"{uuid.uuid4()}@outage.example"
    pipe = redis_client.pipeline(transaction=True)
    for status in (MessageStatus.ACCEPTED, MessageStatus.DELIVERED):
        event = make_status_event(
            message_id=message_id, team_id="t", status=status, recipient="r@x.org"
        )
        add_to_outbox(
            pipe, Topic.MESSAGE_STATUSES, message_id, event, RedisKeys.event_outbox(slot_group("t"))
        )
    pipe.execute()
    redis = async_redis_client(test_settings)
    down = test_settings.model_copy(
        update={"kafka": KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}")}
    )
    stop = asyncio.Event()
    task = asyncio.create_task(OutboxPublisher(down, redis, reclaim_idle_ms=500).run(stop))
    await asyncio.sleep(4)
    stop.set()
    await asyncio.wait_for(task, 30)
    assert outboxed(redis_client) == 2  # nothing dropped while down

    stop = asyncio.Event()
    task = asyncio.create_task(OutboxPublisher(test_settings, redis, reclaim_idle_ms=500).run(stop))
    assert await asyncio.to_thread(wait_until, lambda: outboxed(redis_client) == 0, 30)
    stop.set()
    await asyncio.wait_for(task, 30)
    await redis.aclose()
    reader = StatusReader(test_settings)
    try:
        events = reader.poll_until(
            lambda ev: len([e for e in ev if e.message_id == message_id]) >= 2
        )
    finally:
        reader.close()
    assert {e.status for e in events if e.message_id == message_id} == {"accepted", "delivered"}


def test_smtp_credentials_create_verify_revoke(redis_client: Any) -> None:
    username, password = create_smtp_credential(redis_client, "team-c")
    assert list_smtp_credentials(redis_client, "team-c") == [username]
    assert b"argon2" in redis_client.hget(RedisKeys.smtp_credential(username), "hash")
    verifier = CredentialVerifier()
    assert verifier.verify(redis_client, username, password).team_id == "team-c"
    assert verifier.verify(redis_client, username, password) is not None  # cached path
    assert verifier.verify(redis_client, username, password + "x") is None
    assert verify(redis_client, "nobody", password) is None
    assert revoke_smtp_credential(redis_client, username)
    assert verifier.verify(redis_client, username, password) is None  # cache honours revoke
    assert not revoke_smtp_credential(redis_client, "nobody")
    with pytest.raises(ValueError):
        create_smtp_credential(redis_client, "")


def test_inbound_dsn_and_arf_become_events_and_suppressions(
    running_mta: Settings, redis_client: Any
) -> None:
    sent = {"orig-1@sender.example": "gone@example.org", "orig-2@sender.example": "angry@yahoo.com"}
    for message_id, rcpt in sent.items():
        redis_client.set(
            RedisKeys.message_mapping("team-in", message_id),
            serialize(MessageMapping(team_id="team-in")),
        )
        # What the delivery worker records with a delivered outcome: reports about
        # recipients a message never had change nothing (mta/tests/test_forged_reports.py).
        pipe = redis_client.pipeline()
        record_sent(pipe, message_id, "team-in", "transactional", {rcpt: ""})
        pipe.execute()
    with smtplib.SMTP("127.0.0.1", running_mta.mta.inbound_port, timeout=10) as client:
        client.sendmail("", ["bounces@bounces.kibamail.test"], DSN)
        client.sendmail("feedback@yahoo.com", ["fbl@bounces.kibamail.test"], ARF)
    suppressed = RedisKeys.suppression("team-in")
    assert wait_until(lambda: redis_client.scard(suppressed) == 2)
    assert redis_client.smembers(suppressed) == {b"gone@example.org", b"angry@yahoo.com"}
    reader = StatusReader(running_mta)
    try:
        events = reader.poll_until(
            lambda ev: {e.status for e in ev if e.team_id == "team-in"} >= {"bounced", "complained"}
        )
    finally:
        reader.close()
    bounce = next(e for e in events if e.team_id == "team-in" and e.status == "bounced")
    assert bounce.recipient == "gone@example.org" and bounce.bounce_class == "hard"
