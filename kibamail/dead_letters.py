"""The dead-letter store: what a consumer could not handle, kept for ops to list and replay.

Every component that gives up on an input (the ClickHouse sinks' refused rows, the
correlation flow's unmapped message ids, malformed webhook events, unparseable inbound
reports) writes the same envelope (``kibamail.contracts.dead_letter``) to the
``kibamail_dead_letter`` topic: the source, the reason, the original bytes. Nothing is
dropped silently: each write counts in ``kibamail_dead_letters_total``.

``kibamail deadletters list`` reads the topic from the beginning without a consumer group
(listing moves no offsets); ``replay`` re-produces chosen letters' original bytes to their
source topic with broker acknowledgement and remembers each replayed letter id in Redis,
so a letter is replayed once unless forced. Consumers downstream are idempotent by
``event_id`` (the sinks' ReplacingMergeTree), so a replay after a fix is safe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import Counter

from kibamail.clients import kafka_consumer_config, kafka_producer_config
from kibamail.contracts import Topic, dead_letter
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings

DEAD_LETTERS_WRITTEN = Counter(
    "kibamail_dead_letters_total",
    "Inputs given up on and written to the dead-letter topic, by source",
    ["source"],
)

REPLAYABLE_TOPICS = frozenset(topic.value for topic in Topic if topic is not Topic.DEAD_LETTER)


class ReplayError(ValueError):
    """A letter that cannot be replayed from here (unknown source, bad envelope)."""


@dataclass(frozen=True)
class Letter:
    """One dead letter as stored: its id, where it came from, why, and the original bytes."""

    letter_id: str
    source: str
    reason: str
    payload: str
    occurred_at: str
    partition: int
    offset: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.letter_id,
            "source": self.source,
            "reason": self.reason,
            "occurred_at": self.occurred_at,
            "partition": self.partition,
            "offset": self.offset,
            "payload": self.payload,
        }


# Kafka's default message size is 1 MB: a larger payload (a 25 MiB report) is cut, and the
# reason says so, rather than making the letter itself undeliverable.
MAX_STORED_PAYLOAD = 512 * 1024


def envelope(source: str, payload: bytes | None, reason: str) -> bytes:
    """One dead letter's envelope bytes, counted in ``kibamail_dead_letters_total``."""
    if payload is not None and len(payload) > MAX_STORED_PAYLOAD:
        reason = f"{reason} (payload cut to {MAX_STORED_PAYLOAD} of {len(payload)} bytes)"
        payload = payload[:MAX_STORED_PAYLOAD]
    DEAD_LETTERS_WRITTEN.labels(source[:60]).inc()
    return dead_letter(source, payload, reason)


def write(producer: Any, source: str, payload: bytes | None, reason: str, key: Any = None) -> None:
    """Queue one dead letter on a confluent-kafka producer (the caller flushes as it does
    for its other output)."""
    producer.produce(Topic.DEAD_LETTER.value, envelope(source, payload, reason), key=key)


def outbox_entry(source: str, payload: bytes | None, reason: str) -> dict[str, bytes]:
    """The fields of a Redis event-outbox entry (``kibamail.outbox``) carrying one dead
    letter: for processes that publish through an outbox instead of a Kafka producer."""
    return {
        "topic": Topic.DEAD_LETTER.value.encode(),
        "key": source.encode(),
        "value": envelope(source, payload, reason),
    }


def parse_letter(value: bytes | None, partition: int, offset: int) -> Letter:
    """A stored envelope; one that is not an envelope is shown as such, not skipped."""
    try:
        raw = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        raw = None
    if not isinstance(raw, dict):
        text = (value or b"").decode("utf-8", errors="replace")
        reason = "not a dead-letter envelope"
        return Letter(f"p{partition}o{offset}", "", reason, text, "", partition, offset)
    return Letter(
        letter_id=str(raw.get("event_id") or f"p{partition}o{offset}"),
        source=str(raw.get("source_topic") or ""),
        reason=str(raw.get("reason") or ""),
        payload=str(raw.get("payload") or ""),
        occurred_at=str(raw.get("occurred_at") or ""),
        partition=partition,
        offset=offset,
    )


def read_all(settings: Settings, timeout: float = 10.0) -> Iterator[Letter]:
    """Every letter on the topic, oldest first per partition, without committing offsets."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        kafka_consumer_config(
            "kibamail-deadletters-reader",
            settings,
            **{"enable.auto.commit": False, "enable.partition.eof": True},
        )
    )
    try:
        metadata = consumer.list_topics(Topic.DEAD_LETTER.value, timeout=timeout)
        topic = metadata.topics.get(Topic.DEAD_LETTER.value)
        if topic is None or topic.error is not None:
            return
        remaining: dict[int, int] = {}
        for partition in topic.partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(Topic.DEAD_LETTER.value, partition), timeout=timeout
            )
            if high > low:
                remaining[partition] = high
        if not remaining:
            return
        consumer.assign([TopicPartition(Topic.DEAD_LETTER.value, p, 0) for p in sorted(remaining)])
        idle = 0
        while remaining and idle < int(timeout / 0.5):
            messages = consumer.consume(500, timeout=0.5)
            idle = 0 if messages else idle + 1
            for message in messages:
                if message.error() is not None:
                    continue
                partition, offset = message.partition() or 0, message.offset() or 0
                yield parse_letter(message.value(), partition, offset)
                if partition in remaining and offset + 1 >= remaining[partition]:
                    del remaining[partition]
    finally:
        consumer.close()


def select(
    letters: Iterable[Letter],
    *,
    ids: Iterable[str] = (),
    source: str = "",
    reason_prefix: str = "",
) -> list[Letter]:
    """Letters matching every given filter (no filter: all)."""
    wanted = set(ids)
    return [
        letter
        for letter in letters
        if (not wanted or letter.letter_id in wanted)
        and (not source or letter.source == source)
        and (not reason_prefix or letter.reason.startswith(reason_prefix))
    ]


@dataclass
class ReplayResult:
    replayed: list[str]
    already_replayed: list[str]
    refused: dict[str, str]


def replay(
    settings: Settings,
    letters: Iterable[Letter],
    redis: Any,
    *,
    force: bool = False,
    dry_run: bool = False,
    producer_factory: Callable[[dict[str, Any]], Any] | None = None,
) -> ReplayResult:
    """Re-produce each letter's original bytes to its source topic, acknowledged by the
    broker, then mark it replayed; letters from a source that is not a topic are refused
    with the reason (they are re-submitted where they came from, e.g. a corrected report)."""
    result = ReplayResult([], [], {})
    todo: list[Letter] = []
    for letter in letters:
        if letter.source not in REPLAYABLE_TOPICS:
            result.refused[letter.letter_id] = (
                f"source {letter.source!r} is not a topic this command can replay to"
            )
        elif not force and redis.sismember(RedisKeys.DEAD_LETTERS_REPLAYED, letter.letter_id):
            result.already_replayed.append(letter.letter_id)
        else:
            todo.append(letter)
    if dry_run or not todo:
        result.replayed = [letter.letter_id for letter in todo] if dry_run else []
        return result
    from confluent_kafka import Producer

    make = producer_factory or Producer
    producer = make(kafka_producer_config(settings))
    failures: dict[str, str] = {}

    def delivered(letter_id: str) -> Callable[[Any, Any], None]:
        def report(error: Any, _message: Any) -> None:
            if error is not None:
                failures[letter_id] = str(error)

        return report

    for letter in todo:
        producer.produce(
            letter.source, letter.payload.encode(), on_delivery=delivered(letter.letter_id)
        )
    if producer.flush(30) > 0:
        raise ReplayError("the broker did not acknowledge every replayed letter within 30 s")
    for letter in todo:
        if letter.letter_id in failures:
            result.refused[letter.letter_id] = f"broker refused: {failures[letter.letter_id]}"
        else:
            result.replayed.append(letter.letter_id)
    if result.replayed:
        redis.sadd(RedisKeys.DEAD_LETTERS_REPLAYED, *result.replayed)
    return result
