"""The Dagster hourly re-check, executed in process against the test stack: a DKIM record
that breaks between two runs clears readiness, lands one event pair on the broker and
queues one email to the Administrators; the next failing run mails nobody."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from confluent_kafka import Consumer, TopicPartition

from api.db import make_engine, make_sessionmaker, migrate, utcnow
from api.models import Domain
from api.services.domains import dns_records, generate_keys
from dagster_project.defs.domains import SCHEDULED_TIME_TAG
from kibamail.contracts import DomainCheckEvent, OutboundMessage, Topic, deserialize
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from testing.submissions import submission_entries
from testing.testnet import DnsServer, Zone

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

DOMAIN = "recheck-job.example"
ADMIN = "owner@recheck-job.example"


@pytest.fixture
def world(
    isolated_warehouse: Settings, kafka_service: str, redis_service: str, tmp_path: Path
) -> Iterator[tuple[Settings, Zone, str]]:
    """Its own API database with one team and domain, and DNS serving the good records."""
    from api.services.accounts import create_team, create_user
    from kibamail.clients import ensure_topics

    test_settings = isolated_warehouse
    server = DnsServer(zone=Zone(catch_all=False)).start()
    zone = server.zone
    settings = test_settings.model_copy(
        update={
            "database": test_settings.database.model_copy(
                update={"url": f"sqlite:///{tmp_path / 'api.db'}"}
            ),
            "mta": test_settings.mta.model_copy(update={"dns_port": server.port}),
        }
    )
    ensure_topics(settings)
    migrate(settings.database.url)
    engine = make_engine(settings.database.url)
    with make_sessionmaker(engine).begin() as db:
        owner = create_user(db, ADMIN, "correct horse battery")
        team = create_team(db, owner, "Recheck")
        domain = generate_keys(DOMAIN, team.id)
        db.add(domain)
        db.flush()
        for record in dns_records(domain, settings):
            zone.add(record.name, record.type, record.value)
        team_id = team.id
    engine.dispose()
    zone.add(f"_spf.{settings.mta.hostname}", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    yield settings, zone, team_id
    server.stop()


def run_recheck(settings: Settings, tags: dict[str, str] | None = None) -> dict[str, Any]:
    from dagster_project.jobs import settings_in_environment

    with settings_in_environment(settings):
        from dagster_project.definitions import defs

        job = defs.resolve_job_def("domain_recheck")
        with dg.DagsterInstance.ephemeral() as instance:
            result = job.execute_in_process(
                instance=instance,
                tags=tags,
                run_config={"ops": {"recheck_sending_domains": {"config": {"domains": [DOMAIN]}}}},
            )
    assert result.success
    outputs = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_OUTPUT]
    metadata = outputs[0].event_specific_data.metadata
    counts = result.output_for_node("recheck_sending_domains")
    assert {key: value.value for key, value in metadata.items()} == counts
    return counts


def make_due(settings: Settings) -> None:
    engine = make_engine(settings.database.url)
    with make_sessionmaker(engine).begin() as db:
        domain = db.query(Domain).filter_by(name=DOMAIN).one()
        domain.last_checked_at = utcnow() - timedelta(hours=2)
    engine.dispose()


def events_on_broker(settings: Settings, want: int) -> list[DomainCheckEvent]:
    from kibamail.clients import kafka_consumer_config

    consumer = Consumer(kafka_consumer_config("test-domain-recheck-job", settings))
    topic = Topic.DOMAIN_CHECKS.value
    found: list[DomainCheckEvent] = []
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        for _ in range(60):
            if len(found) >= want:
                break
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                event = deserialize(DomainCheckEvent, message.value() or b"")
                if event.domain == DOMAIN:
                    found.append(event)
    finally:
        consumer.close()
    return found


def rows_in_warehouse(settings: Settings, want: int) -> list[tuple[Any, ...]]:
    """Run the pipelines' ClickHouse sink on the topic until this domain's rows land."""
    import time
    import uuid

    from kibamail.clients import clickhouse_client
    from pipelines.sinks.clickhouse import ClickHouseSink

    sink = ClickHouseSink(
        settings,
        topics=[Topic.DOMAIN_CHECKS],
        group_id=f"test-domain-checks-sink-{uuid.uuid4().hex[:8]}",
        flush_seconds=0.1,
    )
    client = clickhouse_client(settings)
    query = (
        "SELECT record, previous_status, current_status, team_id"
        f" FROM {settings.clickhouse.database}.raw_domain_checks FINAL"
        " WHERE domain = {domain:String} ORDER BY record"
    )
    try:
        deadline = time.monotonic() + 60
        rows: list[tuple[Any, ...]] = []
        while len(rows) < want and time.monotonic() < deadline:
            sink.poll_once(0.5)
            rows = client.query(query, parameters={"domain": DOMAIN}).result_rows
        return rows
    finally:
        sink.close()


def alerts(redis: Any) -> list[email.message.EmailMessage]:
    messages = [OutboundMessage.from_stream_fields(f) for _id, f in submission_entries(redis)]
    return [
        email.message_from_bytes(m.data, policy=email.policy.default)
        for m in messages
        if m.recipients == [ADMIN]
    ]


def test_hourly_recheck_job_alerts_once_when_dkim_breaks(
    world: tuple[Settings, Zone, str], redis_client: Any
) -> None:
    settings, zone, team_id = world
    first = run_recheck(settings)
    assert first == {"due": 1, "ready": 1, "not_ready": 0, "unknown": 0, "events": 0,
                     "emails": 0, "errors": 0}  # fmt: skip
    assert redis_client.exists(RedisKeys.domain_ready(team_id, DOMAIN))
    assert run_recheck(settings)["due"] == 0  # checked a moment ago: not due

    dkim = next(name for name in zone.records if name.endswith("r._domainkey." + DOMAIN))
    zone.set(dkim, "TXT", "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiGnotourkey")
    make_due(settings)
    # The schedule tick of this hour (the job judges "due" by the tick, not the wall clock).
    tick = datetime.now(UTC).replace(minute=20, second=0, microsecond=0)
    second = run_recheck(settings, {SCHEDULED_TIME_TAG: tick.isoformat()})
    assert second == {"due": 1, "ready": 0, "not_ready": 1, "unknown": 0, "events": 2,
                      "emails": 1, "errors": 0}  # fmt: skip
    assert not redis_client.exists(RedisKeys.domain_ready(team_id, DOMAIN))
    events = events_on_broker(settings, want=2)
    assert sorted((e.record, e.previous_status, e.current_status) for e in events) == [
        ("dkim", "pass", "fail"),
        ("ready", "pass", "fail"),
    ]
    assert {e.team_id for e in events} == {team_id}
    assert {e.checked_at for e in events} == {tick}  # a re-executed run derives the same ids
    assert rows_in_warehouse(settings, want=2) == [
        ("dkim", "pass", "fail", team_id),
        ("ready", "pass", "fail", team_id),
    ]
    [mail] = alerts(redis_client)
    assert mail["Subject"] == f"{DOMAIN}: DNS check failing (DKIM (RSA))"
    assert f"expected: TXT record at {dkim}" in mail.get_content()

    make_due(settings)
    third = run_recheck(settings)
    assert (third["not_ready"], third["events"], third["emails"]) == (1, 0, 0)
    assert len(alerts(redis_client)) == 1


def test_the_recheck_runs_hourly() -> None:
    from dagster_project.definitions import defs

    schedule = defs.get_schedule_def("domain_recheck_schedule")
    assert schedule.cron_schedule == "20 * * * *"
    assert schedule.job_name == "domain_recheck"
