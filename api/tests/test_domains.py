"""Domains: DKIM keys, the records to publish, verification over real DNS on loopback."""

from __future__ import annotations

import base64
import email
import email.policy
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import dkim
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.db import utcnow
from api.models import Domain
from api.services.domains import recheck_due_domains
from api.tests.conftest import RecordingProducer, signup
from kibamail.contracts import DomainCheckEvent
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from testing.submissions import submission_entries
from testing.testnet import DnsServer, Zone

pytestmark = pytest.mark.integration


@pytest.fixture
def zone(api_settings: Settings, redis_client: Any) -> Iterator[tuple[Zone, TestClient]]:
    """A loopback DNS server holding only what the test publishes, and an app whose
    resolver points at it."""
    with DnsServer(zone=Zone(catch_all=False)) as server:
        settings = api_settings.model_copy(
            update={"mta": api_settings.mta.model_copy(update={"dns_port": server.port})}
        )
        app = create_app(settings, producer=RecordingProducer(), run_scheduler=False)
        with TestClient(app) as client:
            yield server.zone, client


def test_add_domain_publish_records_and_verify(
    zone: tuple[Zone, TestClient], redis_client: Any
) -> None:
    dns_zone, client = zone
    auth = signup(client)
    team = client.post("/v1/teams", json={"name": "D"}, headers=auth).json()["id"]
    base = f"/v1/teams/{team}/domains"
    assert client.post(base, json={"name": "not a domain"}, headers=auth).status_code == 422
    domain = client.post(base, json={"name": "Mail.Acme-Verify.test"}, headers=auth).json()
    assert domain["name"] == "mail.acme-verify.test" and domain["status"] == "pending"
    records = {r["record"]: r for r in domain["records"]}
    assert set(records) == {
        "spf",
        "dkim_rsa",
        "dkim_ed25519",
        "dmarc",
        "return_path",
        "tracking",
        "ownership",
    }
    assert records["ownership"]["name"] == "_kibamail-verify.mail.acme-verify.test"
    assert records["ownership"]["value"].startswith("kibamail-verify=")
    assert records["ownership"]["required"] is False  # no other team has added the name
    assert records["dkim_ed25519"]["value"].startswith("v=DKIM1; k=ed25519; p=")
    rsa_public = base64.b64decode(records["dkim_rsa"]["value"].split("p=")[1])
    assert len(rsa_public) > 256  # 2048-bit SubjectPublicKeyInfo

    checked = client.post(f"{base}/{domain['id']}/verify", headers=auth).json()
    assert checked["status"] == "pending"
    assert {r["status"] for r in checked["records"]} == {"missing"}
    assert redis_client.get(RedisKeys.domain_ready(team, "mail.acme-verify.test")) is None

    for key in ("spf", "dkim_rsa", "dmarc"):
        dns_zone.add(records[key]["name"], records[key]["type"], records[key]["value"])
    dns_zone.add(f"_spf.{state_settings(client).mta.hostname}", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    dns_zone.add(records["return_path"]["name"], "CNAME", "elsewhere.example.")
    verified = client.post(f"{base}/{domain['id']}/verify", headers=auth).json()
    status = {r["record"]: r["status"] for r in verified["records"]}
    assert verified["status"] == "verified"
    assert status == {
        "spf": "verified",
        "dkim_rsa": "verified",
        "dmarc": "verified",
        "dkim_ed25519": "missing",
        "return_path": "mismatch",
        "tracking": "missing",
        "ownership": "missing",
    }
    assert verified["ready"] is True
    assert verified["checks"]["mx"]["status"] == "fail"  # shown, but not required
    assert verified["checks"]["dmarc"]["status"] == "pass"
    rp = next(r for r in verified["records"] if r["record"] == "return_path")
    assert rp["check"] == "fail" and rp["found"] == ["elsewhere.example"]
    assert "not to mta.kibamail.local" in rp["reasons"][0]
    assert redis_client.get(RedisKeys.domain_ready(team, "mail.acme-verify.test")) == b"1"
    key = redis_client.hgetall(RedisKeys.dkim_key(team, "mail.acme-verify.test"))
    assert key[b"algorithm"] == b"rsa-sha256"
    message = b"From: a@mail.acme-verify.test\r\nTo: b@x.com\r\nSubject: s\r\n\r\nbody\r\n"
    signed = dkim.sign(message, key[b"selector"], b"mail.acme-verify.test", key[b"private_key"])
    txt = records["dkim_rsa"]["value"].encode()
    assert dkim.verify(signed + message, dnsfunc=lambda name, timeout=5: txt)

    # The periodic re-check notices a record that disappeared and clears the ready flag.
    dns_zone.remove("_dmarc.mail.acme-verify.test", "TXT")
    assert _recheck(client, domain["id"], redis_client) == []  # not due yet: not checked
    _make_due(client, domain["id"])
    events = _recheck(client, domain["id"], redis_client)
    assert {(e.record, e.previous_status, e.current_status) for e in events} == {
        ("dmarc", "pass", "fail"),
        ("ready", "pass", "fail"),
    }
    shown = client.get(f"{base}/{domain['id']}", headers=auth).json()
    assert shown["status"] == "pending" and shown["ready"] is False
    assert redis_client.get(RedisKeys.domain_ready(team, "mail.acme-verify.test")) is None

    again = client.post(base, json={"name": "mail.acme-verify.test"}, headers=auth)
    assert again.status_code == 409
    assert client.delete(f"{base}/{domain['id']}", headers=auth).status_code == 200
    assert redis_client.get(RedisKeys.domain_ready(team, "mail.acme-verify.test")) is None
    assert not redis_client.exists(RedisKeys.dkim_key(team, "mail.acme-verify.test"))


def state_settings(client: TestClient) -> Settings:
    return client.app.state.km.settings  # type: ignore[attr-defined]


def _make_due(client: TestClient, domain_id: str) -> None:
    with client.app.state.km.sessions.begin() as db:  # type: ignore[attr-defined]
        db.get(Domain, domain_id).last_checked_at = utcnow() - timedelta(days=1)


def _recheck(
    client: TestClient, domain_id: str, redis: Any, publish: Any = None
) -> list[DomainCheckEvent]:
    """Run the scheduled re-check restricted to this test's domain; returns its events."""
    state = client.app.state.km  # type: ignore[attr-defined]
    with state.sessions() as db:
        name = db.get(Domain, domain_id).name
    events: list[DomainCheckEvent] = []

    def record(event: DomainCheckEvent) -> None:
        events.append(event)
        if publish is not None:
            publish(event)

    counts = recheck_due_domains(state.sessions, state.settings, redis, record, names=[name])
    assert counts["errors"] == 0
    assert counts["events"] == len(events)
    return events


def _domain_events(settings: Settings, domain: str, want: int) -> list[DomainCheckEvent]:
    """This domain's events on the real broker (read from the start, filtered by domain)."""
    import time

    from confluent_kafka import Consumer, TopicPartition

    from kibamail.clients import kafka_consumer_config
    from kibamail.contracts import Topic, deserialize

    consumer = Consumer(kafka_consumer_config(f"test-domain-checks-{domain}", settings))
    try:
        topic = Topic.DOMAIN_CHECKS.value
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        found: list[DomainCheckEvent] = []
        deadline = time.monotonic() + 20
        while len(found) < want and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            event = deserialize(DomainCheckEvent, message.value() or b"")
            if event.domain == domain:
                found.append(event)
        return found
    finally:
        consumer.close()


def _alerts_to(redis: Any, address: str) -> list[str]:
    from kibamail.contracts import OutboundMessage

    messages = [
        OutboundMessage.from_stream_fields(fields) for _id, fields in submission_entries(redis)
    ]
    decoded = []
    for message in messages:
        if message.recipients == [address]:
            parsed = email.message_from_bytes(message.data, policy=email.policy.default)
            decoded.append(f"Subject: {parsed['Subject']}\n{parsed.get_content()}")
    return decoded


def test_a_record_that_breaks_raises_one_event_set_and_one_email(
    zone: tuple[Zone, TestClient], redis_client: Any, kafka_service: str
) -> None:
    import uuid

    from deliverability.domain_alerts import KafkaEventPublisher
    from kibamail.clients import ensure_topics

    dns_zone, client = zone
    settings = state_settings(client)
    ensure_topics(settings)
    admin = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    auth = signup(client, admin)
    team = client.post("/v1/teams", json={"name": "Alerts"}, headers=auth).json()["id"]
    base = f"/v1/teams/{team}/domains"
    name = f"alerts-{uuid.uuid4().hex[:8]}.test"
    domain = client.post(base, json={"name": name}, headers=auth).json()
    records = {r["record"]: r for r in domain["records"]}
    for record in records.values():
        dns_zone.add(record["name"], record["type"], record["value"])
    dns_zone.add(f"_spf.{settings.mta.hostname}", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    assert client.post(f"{base}/{domain['id']}/verify", headers=auth).json()["ready"] is True
    ready_key = RedisKeys.domain_ready(team, name)
    assert redis_client.exists(ready_key)

    # The customer rotates the DKIM record to a key that is not ours.
    dkim_name = records["dkim_rsa"]["name"]
    dns_zone.set(dkim_name, "TXT", "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiGnotours")
    publisher = KafkaEventPublisher(settings)
    _make_due(client, domain["id"])
    events = _recheck(client, domain["id"], redis_client, publisher)
    assert {(e.record, e.previous_status, e.current_status) for e in events} == {
        ("dkim", "pass", "fail"),
        ("ready", "pass", "fail"),
    }
    assert not redis_client.exists(ready_key)  # the MTA holds this domain's mail now

    on_broker = _domain_events(settings, name, want=2)
    assert sorted(e.event_id for e in on_broker) == sorted(e.event_id for e in events)
    assert {e.team_id for e in on_broker} == {team}
    assert "does not match ours" in next(e.reason for e in on_broker if e.record == "dkim")

    alerts = _alerts_to(redis_client, admin)
    assert len(alerts) == 1
    text = alerts[0]
    assert f"Subject: {name}: DNS check failing (DKIM (RSA))" in text
    assert f"expected: TXT record at {dkim_name}: v=DKIM1; k=rsa; p=" in text
    assert "found:    v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiGnotours" in text
    assert f"publish:  {dkim_name} TXT {records['dkim_rsa']['value'][:40]}" in text
    assert "no longer ready to send" in text

    # Still broken an hour later: no new event, no second email.
    _make_due(client, domain["id"])
    assert _recheck(client, domain["id"], redis_client, publisher) == []
    assert len(_alerts_to(redis_client, admin)) == 1

    # Fixed, then broken again: that is a new failure, so it mails again.
    dns_zone.set(dkim_name, "TXT", records["dkim_rsa"]["value"])
    _make_due(client, domain["id"])
    assert _recheck(client, domain["id"], redis_client, publisher) == []
    assert redis_client.exists(ready_key)
    dns_zone.remove(dkim_name, "TXT")
    _make_due(client, domain["id"])
    assert len(_recheck(client, domain["id"], redis_client, publisher)) == 2
    assert len(_alerts_to(redis_client, admin)) == 2
    assert publisher.produced == 4


def test_status_wording_for_new_and_legacy_rows() -> None:
    from api.services.domains import api_status, check_status, stored_checks

    assert api_status({"check": "pass", "found": ["x"]}) == "verified"
    assert api_status({"check": "fail", "found": []}) == "missing"
    assert api_status({"check": "fail", "found": ["v=spf1 -all"]}) == "mismatch"
    assert api_status({"check": "unknown", "reasons": ["TXT x: DNS timeout"]}) == "error"
    assert api_status(None) == "not_checked"
    # Rows written before the checks were unified keep their wording, keyed by record.
    legacy = Domain(name="old.example", record_status={"dkim_rsa": {"status": "verified"}})
    checks = stored_checks(legacy)
    assert set(checks) == {"dkim"}
    assert (api_status(checks["dkim"]), check_status(checks["dkim"])) == ("verified", "pass")


def test_bootstrap_domains_without_dns_are_not_rechecked(
    zone: tuple[Zone, TestClient], redis_client: Any, team: Any
) -> None:
    _dns_zone, client = zone
    state = client.app.state.km  # type: ignore[attr-defined]
    counts = recheck_due_domains(
        state.sessions, state.settings, redis_client, lambda _event: None, names=[team.domain]
    )
    assert counts["due"] == 0
    assert redis_client.exists(RedisKeys.domain_ready(team.team_id, team.domain))
