"""The dead-letter store: nothing given up on is lost; ops list it and replay it once."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, Producer, TopicPartition
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from api.webhooks.consumer import consume_batch
from console.cli import main as cli
from kibamail import dead_letters
from kibamail.clients import kafka_consumer_config, kafka_producer_config
from kibamail.contracts import CorrelatedMessageEvent, MessageStatus, Topic, serialize
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings, get_settings, settings_to_env

pytestmark = pytest.mark.integration


@dataclass
class FakeMessage:
    topic_name: str
    payload: bytes

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self.topic_name

    def value(self) -> bytes:
        return self.payload


@dataclass
class OneFetchConsumer:
    """A consumer that hands out one fetch, then nothing; records its commits."""

    messages: list[FakeMessage]
    commits: int = 0
    fetched: list[int] = field(default_factory=list)

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        batch, self.messages = self.messages, []
        self.fetched.append(len(batch))
        return batch

    def commit(self, asynchronous: bool = False) -> None:
        self.commits += 1


def letters_with(settings: Settings, needle: str) -> list[dead_letters.Letter]:
    return [
        letter
        for letter in dead_letters.read_all(settings)
        if needle in letter.payload or needle in letter.reason
    ]


def produce_letter(settings: Settings, source: str, payload: bytes, reason: str) -> None:
    producer = Producer(kafka_producer_config(settings))
    dead_letters.write(producer, source, payload, reason)
    assert producer.flush(10) == 0


def source_count(settings: Settings, topic: str, needle: bytes) -> int:
    """How many messages on ``topic`` carry ``needle`` (read from the beginning)."""
    consumer = Consumer(kafka_consumer_config(f"dl-check-{uuid.uuid4().hex}", settings))
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = [TopicPartition(topic, p, 0) for p in metadata.topics[topic].partitions]
        ends = {
            tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions
        }
        consumer.assign(partitions)
        found, seen = 0, dict.fromkeys(ends, 0)
        for _ in range(60):
            for message in consumer.consume(1000, timeout=0.5):
                if message.error() is None:
                    seen[message.partition() or 0] = (message.offset() or 0) + 1
                    found += needle in (message.value() or b"")
            if all(seen[p] >= end for p, end in ends.items()):
                break
        return found
    finally:
        consumer.close()


def test_a_malformed_webhook_event_is_dead_lettered_before_its_offset_is_committed(
    test_settings: Settings, kafka_service: str
) -> None:
    marker = f"malformed-{uuid.uuid4().hex}"
    consumer = OneFetchConsumer([FakeMessage(Topic.CLICKHOUSE_MESSAGES.value, marker.encode())])
    sessions = sessionmaker(create_engine("sqlite://"))
    producer = Producer(kafka_producer_config(test_settings))
    before = dead_letters.DEAD_LETTERS_WRITTEN.labels(Topic.CLICKHOUSE_MESSAGES.value)._value.get()

    created = consume_batch(consumer, sessions, dead_letters=producer)

    assert created == 0 and consumer.commits == 1
    [letter] = letters_with(test_settings, marker)
    assert letter.source == Topic.CLICKHOUSE_MESSAGES.value
    assert letter.reason.startswith("malformed webhook event")
    assert letter.payload == marker
    after = dead_letters.DEAD_LETTERS_WRITTEN.labels(Topic.CLICKHOUSE_MESSAGES.value)._value.get()
    assert after == before + 1


def test_replay_sends_the_original_bytes_back_once(
    test_settings: Settings, kafka_service: str, redis_client: Any
) -> None:
    event = CorrelatedMessageEvent(
        team_id=f"dl-{uuid.uuid4().hex[:8]}",
        message_id=f"{uuid.uuid4().hex}@x.test",
        status=MessageStatus.DELIVERED,
    )
    payload = serialize(event)
    topic = Topic.CLICKHOUSE_MESSAGES.value
    produce_letter(test_settings, topic, payload, "clickhouse refused row: test outage")
    [letter] = letters_with(test_settings, event.message_id)
    assert source_count(test_settings, topic, event.message_id.encode()) == 0

    first = dead_letters.replay(test_settings, [letter], redis_client)
    second = dead_letters.replay(test_settings, [letter], redis_client)

    assert first.replayed == [letter.letter_id] and not first.refused
    assert second.replayed == [] and second.already_replayed == [letter.letter_id]
    assert source_count(test_settings, topic, event.message_id.encode()) == 1
    replayed = redis_client.sismember(RedisKeys.DEAD_LETTERS_REPLAYED, letter.letter_id)
    assert replayed


def test_a_letter_without_a_topic_source_is_refused_not_guessed(
    test_settings: Settings, kafka_service: str, redis_client: Any
) -> None:
    marker = f"report-{uuid.uuid4().hex}"
    produce_letter(test_settings, "smtp-inbound", marker.encode(), "unparseable report")
    [letter] = letters_with(test_settings, marker)

    result = dead_letters.replay(test_settings, [letter], redis_client)

    assert result.replayed == [] and "not a topic" in result.refused[letter.letter_id]
    assert not redis_client.sismember(RedisKeys.DEAD_LETTERS_REPLAYED, letter.letter_id)


def test_cli_lists_and_replays_by_id(
    test_settings: Settings, kafka_service: str, redis_service: str
) -> None:
    event = CorrelatedMessageEvent(
        team_id="dl-cli", message_id=f"{uuid.uuid4().hex}@cli.test", status=MessageStatus.BOUNCED
    )
    produce_letter(
        test_settings, Topic.CLICKHOUSE_MESSAGES.value, serialize(event), "cli replay test"
    )
    env = settings_to_env(test_settings)
    runner = CliRunner()
    get_settings.cache_clear()
    try:
        listed = runner.invoke(
            cli,
            ["deadletters", "list", "--reason-prefix", "cli replay", "--json", "--limit", "0"],
            env=env,
        )
        assert listed.exit_code == 0, listed.output
        rows = [orjson.loads(line) for line in listed.output.splitlines()]
        [row] = [r for r in rows if event.message_id in r["payload"]]
        refused = runner.invoke(cli, ["deadletters", "replay"], env=env)
        assert refused.exit_code != 0 and "--id or --source" in refused.output
        replayed = runner.invoke(cli, ["deadletters", "replay", "--id", row["id"]], env=env)
        assert replayed.exit_code == 0, replayed.output
        assert "replayed 1" in replayed.output
        again = runner.invoke(cli, ["deadletters", "replay", "--id", row["id"]], env=env)
        assert again.exit_code == 0 and "replayed 0; already replayed 1" in again.output
        unknown = runner.invoke(cli, ["deadletters", "replay", "--id", "no-such-letter"], env=env)
        assert unknown.exit_code == 1
    finally:
        get_settings.cache_clear()
