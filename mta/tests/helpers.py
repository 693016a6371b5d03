"""Shared helpers for the MTA tests: a fast policy file, messages, Kafka read-back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from kibamail.contracts import MessageStatusEvent, OutboundMessage, Topic, TrafficKind, deserialize
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings


def queued(redis: Any) -> int:
    """Entries in every slot group's submission stream."""
    return sum(int(redis.xlen(key)) for key in RedisKeys.submission_streams())


def retries(redis: Any) -> int:
    """Retry/held jobs in every slot group's retry schedule."""
    return sum(int(redis.zcard(key)) for key in RedisKeys.retry_schedules())


def outboxed(redis: Any) -> int:
    """Events in every slot group's MTA outbox."""
    return sum(int(redis.xlen(key)) for key in RedisKeys.event_outboxes())


FAST_POLICY = """
[queue]
retry_base_seconds = 0.3
retry_max_seconds = 1
max_age_seconds = {max_age}
held_retry_seconds = 0.3
claim_idle_seconds = 2
read_batch = 64
connect_timeout_seconds = 5
command_timeout_seconds = 10

[submission]
max_recipients = 5
max_connections_per_ip = {per_ip}
auth_fail_delay_seconds = 0.05
auth_fail_delay_max_seconds = 0.2
auth_lockout_after = 4
auth_lockout_seconds = 60
idle_timeout_seconds = {idle_timeout}
inbound_domains = ["bounces.kibamail.test"]

[[policies]]
name = "authenticated"
[[policies]]
name = "sender_authorized"
[[policies]]
name = "team_paused"
temporary = true
[[policies]]
name = "bulk_gate"
max_score = 0.9
[[policies]]
name = "rate_limit"
per_second = {per_second}
burst = {burst}
per_day = {per_day}
[[policies]]
name = "suppression"
[[policies]]
name = "domain_ready"
[[policies]]
name = "pool_choice"
[[policies]]
name = "reputation_throttle"
team_per_second = {team_per_second}
max_wait_seconds = 0.2
[[policies]]
name = "warmup"

[pools.transactional]
kind = "transactional"
source_ips = ["127.0.0.1"]
[pools.marketing]
kind = "marketing"
source_ips = ["127.0.0.2", "127.0.0.3"]

[warmup]
schedule = [[1, {warmup_cap}], [30, 100000]]
hourly_fraction = 1.0
[warmup.ip_start_dates]
"127.0.0.2" = {today}

[provider_groups]
google = ["gmail.com"]

[shaping.default]
max_connections = 20
max_messages_per_connection = 50
"""


def duplicate_story(
    records: list[Any], duplicates: set[str], killed_at: float, logs: Sequence[Path] = ()
) -> str:
    """The sink's answers to messages delivered more than once, timed from the kill, and
    the MTA log lines naming them (a reclaim says what it found recorded), so a failed
    exactly-once assertion says which side of the kill each copy was on and why."""
    answers = [
        f"{r.message_id} code={r.answer_code} t={r.ts - killed_at:+.3f}s peer={r.peer}"
        for r in records
        if r.message_id in duplicates
    ]
    lines = [
        line
        for log in logs
        if log.exists()
        for line in log.read_text(errors="replace").splitlines()
        if any(mid in line for mid in duplicates)
    ]
    return "; ".join(answers + lines[-20:])


def write_policy(path: Path, **overrides: object) -> Path:
    from datetime import UTC, datetime

    values = {
        "max_age": 3600,
        "per_ip": 50,
        "per_second": 1000,
        "burst": 2000,
        "warmup_cap": 100000,
        "team_per_second": 100,
        "per_day": 1000000,
        "idle_timeout": 3,
        "today": datetime.now(UTC).date().isoformat(),
    }
    values.update(overrides)
    path.write_text(FAST_POLICY.format(**values))
    return path


def with_policy(settings: Settings, policy: Path, **mta: object) -> Settings:
    return settings.model_copy(
        update={"mta": settings.mta.model_copy(update={"policy_file": policy, **mta})}
    )


def make_message(
    rcpts: list[str],
    *,
    team: str = "team-1",
    sender: str = "news@sender.example",
    kind: TrafficKind = TrafficKind.TRANSACTIONAL,
) -> OutboundMessage:
    domain = sender.rpartition("@")[2]
    message_id = f"{uuid.uuid4()}@{domain}"
    data = (
        f"From: {sender}\r\nTo: {', '.join(rcpts)}\r\nSubject: hello\r\n"
        f"Message-ID: <{message_id}>\r\nDate: Sat, 28 Nov 2026 03:00:00 +0000\r\n\r\n"
        "Hello there.\r\n"
    ).encode()
    return OutboundMessage(
        message_id=message_id,
        team_id=team,
        kind=kind,
        mail_from=sender,
        recipients=rcpts,
        data=data,
    )


def status_offsets(settings: Settings) -> dict[int, int]:
    """Per partition, an offset at or before the status topic's current end: a reader
    started there sees every event produced from now on, and little of the session's
    earlier traffic. (The local broker's ListOffsets answer can lag the true end, never
    pass it, pipelines/README.md; starting early is safe.)"""
    from confluent_kafka import Consumer, TopicPartition

    from kibamail.clients import kafka_consumer_config

    consumer = Consumer(kafka_consumer_config(f"mta-offsets-{uuid.uuid4().hex}", settings))
    try:
        topic = Topic.MESSAGE_STATUSES.value
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
    finally:
        consumer.close()


def wait_until(check: Callable[[], bool], timeout: float = 30.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


class StatusReader:
    """Reads MessageStatusEvents from Kafka (own consumer group): from the beginning, or
    from ``start_offsets`` (partition -> offset, see ``status_offsets``); only the events
    of ``message_ids`` when given (the topic is shared by the whole test session)."""

    def __init__(
        self,
        settings: Settings,
        *,
        start_offsets: dict[int, int] | None = None,
        message_ids: set[str] | None = None,
    ) -> None:
        from confluent_kafka import Consumer, TopicPartition

        from kibamail.clients import kafka_consumer_config

        self.consumer = Consumer(kafka_consumer_config(f"mta-test-{uuid.uuid4().hex}", settings))
        topic = Topic.MESSAGE_STATUSES.value
        if start_offsets is None:
            self.consumer.subscribe([topic])
        else:
            self.consumer.assign(
                [TopicPartition(topic, p, offset) for p, offset in start_offsets.items()]
            )
        self.message_ids = message_ids
        self.events: list[MessageStatusEvent] = []

    def poll_until(
        self, check: Callable[[list[MessageStatusEvent]], bool], timeout: float = 30.0
    ) -> list[MessageStatusEvent]:
        deadline = time.monotonic() + timeout
        wanted = self.message_ids
        while time.monotonic() < deadline and not check(self.events):
            for msg in self.consumer.consume(500, timeout=0.5):
                if msg.error() is not None:
                    continue
                value = msg.value() or b""
                if wanted is not None and orjson.loads(value)["message_id"] not in wanted:
                    continue
                self.events.append(deserialize(MessageStatusEvent, value))
        return self.events

    def close(self) -> None:
        self.consumer.close()
