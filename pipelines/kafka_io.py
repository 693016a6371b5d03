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
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from kibamail.clients import kafka_producer_config
from kibamail.settings import Settings
from pipelines.config import PipelineTuning
from pipelines.metrics import CONSUMER_LAG, ERRORS, note_offsets

log = logging.getLogger(__name__)


class RawMessage(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def brokers(settings: Settings) -> list[str]:
    return [b.strip() for b in settings.kafka.bootstrap_servers.split(",") if b.strip()]


class _Partition(StatefulSourcePartition[RawMessage, int]):
    def __init__(
        self, flow: str, config: dict[str, Any], topic: str, index: int, offset: int, batch: int
    ) -> None:
        self._flow, self._topic, self._index, self._batch = flow, topic, index, batch
        self._offset = offset
        self._consumer = Consumer(config)
        self._consumer.assign([TopicPartition(topic, index, offset)])
        self._where = TopicPartition(topic, index)
        self._lag = CONSUMER_LAG.labels(flow, topic, str(index))

    def next_batch(self) -> list[RawMessage]:
        batch: list[RawMessage] = []
        append = batch.append
        for msg in self._consumer.consume(self._batch, 0.05):
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    ERRORS.labels(self._flow, "kafka").inc()
                    log.warning("kafka error on %s[%d]: %s", self._topic, self._index, err)
                continue
            append(RawMessage(self._topic, self._index, msg.offset(), msg.key(), msg.value()))
        if batch:
            self._offset = batch[-1].offset + 1
            note_offsets(self._flow, {(self._topic, self._index): self._offset})
            _low, high = self._consumer.get_watermark_offsets(self._where, cached=True)
            if high >= 0:
                self._lag.set(max(0, high - self._offset))
        return batch

    def snapshot(self) -> int:
        return self._offset

    def close(self) -> None:
        self._consumer.close()


class LeanKafkaSource(FixedPartitionedSource[RawMessage, int]):
    """Every partition of the given topics; resumes from the snapshot offset."""

    def __init__(self, flow: str, settings: Settings, topics: list[str], batch_size: int) -> None:
        self._flow, self._topics, self._batch = flow, topics, batch_size
        self._config: dict[str, Any] = {
            **settings.kafka.client_config(),
            "group.id": f"kibamail-{flow}-unused",  # offsets live in Bytewax snapshots
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 50,
            "queued.min.messages": 20000,
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
        return parts

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Partition:
        index, topic = for_part.split("-", 1)
        offset = OFFSET_BEGINNING if resume_state is None else resume_state
        return _Partition(self._flow, self._config, topic, int(index), offset, self._batch)


def kafka_source(
    settings: Settings, topics: list[str], tuning: PipelineTuning, flow: str = ""
) -> LeanKafkaSource:
    return LeanKafkaSource(flow or "+".join(topics), settings, topics, tuning.kafka_batch_size)


class _ChunkPartition(StatelessSinkPartition[list[KafkaSinkMessage[bytes | None, bytes]]]):
    def __init__(self, producer: Producer) -> None:
        self._producer = producer

    def write_batch(self, items: list[list[KafkaSinkMessage[bytes | None, bytes]]]) -> None:
        produce, poll = self._producer.produce, self._producer.poll
        for chunk in items:
            for msg in chunk:
                while True:
                    try:
                        produce(msg.topic, msg.value, msg.key)
                        break
                    except BufferError:
                        poll(0.05)
            poll(0)
        # Delivered before Bytewax may close the epoch: at-least-once across a crash.
        if self._producer.flush(60) > 0:
            raise RuntimeError("Kafka did not acknowledge every produced message in 60 s")

    def close(self) -> None:
        self._producer.flush(30)


class ChunkedKafkaSink(DynamicSink[list[KafkaSinkMessage[bytes | None, bytes]]]):
    """Writes lists of messages (each names its topic): one dataflow item per input batch.

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
