"""Kafka sources and sinks of the dataflows, configured from Settings.

The source is a lean ``FixedPartitionedSource`` over confluent-kafka instead of
``bytewax.connectors.kafka.KafkaSource``: that one builds a dataclass and calls four
accessors per message, which halved throughput in our benchmark. Semantics are the
same: one Bytewax partition per Kafka partition, the next offset in the recovery
snapshot, tailing forever; it also publishes consumer lag from fetch responses.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from kibamail.clients import kafka_producer_config
from kibamail.settings import Settings
from pipelines.metrics import CONSUMER_LAG, ERRORS, note_offsets

log = logging.getLogger(__name__)


class RawMessage(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class RawBatch(NamedTuple):
    """One fetch of one partition, column-wise: one dataflow item instead of thousands."""

    topic: str
    partition: int
    first_offset: int
    keys: list[bytes | None]
    values: list[bytes | None]


class OutChunk(NamedTuple):
    """Messages for one topic, column-wise (what the hot paths emit per input batch)."""

    topic: str
    keys: list[bytes | None]
    values: list[bytes]


SinkMessage = KafkaSinkMessage[bytes | None, bytes]
Chunk = OutChunk | list[SinkMessage]


def chunk_messages(chunk: Chunk) -> list[SinkMessage]:
    """The chunk as KafkaSinkMessages (tests and slow paths)."""
    if isinstance(chunk, OutChunk):
        return [
            KafkaSinkMessage(key, value, topic=chunk.topic)
            for key, value in zip(chunk.keys, chunk.values, strict=True)
        ]
    return chunk


def brokers(settings: Settings) -> list[str]:
    return [b.strip() for b in settings.kafka.bootstrap_servers.split(",") if b.strip()]


class _Partition(StatefulSourcePartition[RawMessage | RawBatch, int]):
    def __init__(
        self,
        flow: str,
        config: dict[str, Any],
        topic: str,
        index: int,
        offset: int,
        batch: int,
        columnar: bool = False,
    ) -> None:
        self._flow, self._topic, self._index, self._batch = flow, topic, index, batch
        self._columnar = columnar
        self._offset = offset
        self._consumer = Consumer(config)
        self._consumer.assign([TopicPartition(topic, index, offset)])
        self._where = TopicPartition(topic, index)
        self._lag = CONSUMER_LAG.labels(flow, topic, str(index))

    def _fetch(self) -> list[Any]:
        messages = self._consumer.consume(self._batch, 0.05)
        if any(map(Message.error, messages)):
            good = []
            for msg in messages:
                err = msg.error()
                if err is None:
                    good.append(msg)
                elif err.code() != KafkaError._PARTITION_EOF:
                    ERRORS.labels(self._flow, "kafka").inc()
                    log.warning("kafka error on %s[%d]: %s", self._topic, self._index, err)
            messages = good
        return messages

    def next_batch(self) -> list[RawMessage] | list[RawBatch]:
        messages = self._fetch()
        if not messages:
            return []
        topic, index = self._topic, self._index
        batch: list[RawMessage] | list[RawBatch]
        if self._columnar:
            keys = list(map(Message.key, messages))
            values = list(map(Message.value, messages))
            batch = [RawBatch(topic, index, messages[0].offset(), keys, values)]
        else:
            batch = [
                RawMessage(topic, index, msg.offset(), msg.key(), msg.value()) for msg in messages
            ]
        self._offset = messages[-1].offset() + 1
        note_offsets(self._flow, {(topic, index): self._offset})
        _low, high = self._consumer.get_watermark_offsets(self._where, cached=True)
        if high >= 0:
            self._lag.set(max(0, high - self._offset))
        return batch

    def snapshot(self) -> int:
        return self._offset

    def close(self) -> None:
        self._consumer.close()


def partitions_of_process(parts: list[str], process_id: int, processes: int) -> list[str]:
    """This process's share of the ``"{index}-{topic}"`` partitions: every n-th, in order.

    Every process of a Bytewax cluster sees the same partitions, so listing only a share
    on each spreads them over the processes deterministically (Bytewax then assigns each
    listed partition to one of the listing process's workers).
    """
    ordered = sorted(parts, key=lambda part: (part.split("-", 1)[1], int(part.split("-", 1)[0])))
    return ordered[process_id % max(1, processes) :: max(1, processes)]


class LeanKafkaSource(FixedPartitionedSource[RawMessage | RawBatch, int]):
    """Every partition of the given topics (this process's share in a cluster); resumes
    from the snapshot offset."""

    def __init__(
        self,
        flow: str,
        settings: Settings,
        topics: list[str],
        batch_size: int,
        columnar: bool = False,
    ) -> None:
        self._flow, self._topics, self._batch = flow, topics, batch_size
        self._columnar = columnar
        self._process_id = settings.pipelines.process_id
        self._processes = max(1, len(settings.pipelines.addresses))
        self._config: dict[str, Any] = {
            **settings.kafka.client_config(),
            "group.id": f"kibamail-{flow}-unused",  # offsets live in Bytewax snapshots
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 50,
            # Big fetches: the flows work per batch, so fewer, fuller batches are cheaper.
            "queued.min.messages": max(20000, 4 * batch_size),
            "max.partition.fetch.bytes": 8 * 1024 * 1024,
            "fetch.max.bytes": 64 * 1024 * 1024,
        }

    def list_parts(self) -> list[str]:
        admin = AdminClient(
            {k: v for k, v in self._config.items() if not k.startswith(("group.", "enable."))}
        )
        metadata = admin.list_topics(timeout=30)
        parts = []
        for topic in self._topics:
            if topic not in metadata.topics:
                raise RuntimeError(f"topic {topic!r} does not exist (run `kibamail topics`)")
            parts += [f"{index}-{topic}" for index in metadata.topics[topic].partitions]
        return partitions_of_process(parts, self._process_id, self._processes)

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Partition:
        index, topic = for_part.split("-", 1)
        offset = OFFSET_BEGINNING if resume_state is None else resume_state
        return _Partition(
            self._flow, self._config, topic, int(index), offset, self._batch, self._columnar
        )


def kafka_source(
    settings: Settings,
    topics: list[str],
    flow: str = "",
    columnar: bool = False,
) -> LeanKafkaSource:
    """``columnar``: items are RawBatch (one per fetch) instead of one RawMessage each."""
    name = flow or "+".join(topics)
    return LeanKafkaSource(
        name, settings, topics, settings.pipelines.tuning.kafka_batch_size, columnar
    )


class _ChunkPartition(StatelessSinkPartition[Chunk]):
    def __init__(self, producer: Producer) -> None:
        self._producer = producer

    def _produce(self, topic: str, value: bytes, key: bytes | None) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key)
                return
            except BufferError:
                self._producer.poll(0.05)

    def write_batch(self, items: list[Chunk]) -> None:
        produce, poll = self._producer.produce, self._producer.poll
        for chunk in items:
            if isinstance(chunk, OutChunk):
                topic = chunk.topic
                for key, value in zip(chunk.keys, chunk.values, strict=True):
                    try:
                        produce(topic, value, key)
                    except BufferError:
                        self._produce(topic, value, key)
            else:
                for msg in chunk:
                    self._produce(msg.topic or "", msg.value, msg.key)
            poll(0)
        # Delivered before Bytewax may close the epoch: at-least-once across a crash.
        if self._producer.flush(60) > 0:
            raise RuntimeError("Kafka did not acknowledge every produced message in 60 s")

    def close(self) -> None:
        self._producer.flush(30)


class ChunkedKafkaSink(DynamicSink[Chunk]):
    """Writes OutChunks or lists of messages (each names its topic): one item per batch.

    Passing a batch's thousands of outputs through the dataflow as one item instead of
    one item each saves the per-item cost of every operator on the way.
    """

    def __init__(self, settings: Settings) -> None:
        self._config = kafka_producer_config(
            settings, **{"linger.ms": 20, "batch.num.messages": 10000}
        )

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ChunkPartition:
        return _ChunkPartition(Producer(self._config))


def kafka_sink(settings: Settings) -> KafkaSink:
    """One producer for every output: each KafkaSinkMessage names its own topic."""
    config = kafka_producer_config(settings, **{"linger.ms": 20, "batch.num.messages": 10000})
    config.pop("bootstrap.servers", None)
    return KafkaSink(brokers(settings), topic=None, add_config=config)
