"""Kafka sources and sinks of the dataflows, configured from Settings."""

from __future__ import annotations

from typing import Any

from bytewax.connectors.kafka import KafkaSink, KafkaSource, KafkaSourceMessage

from kibamail.clients import kafka_producer_config
from kibamail.settings import Settings
from pipelines.config import PipelineTuning


def brokers(settings: Settings) -> list[str]:
    return [b.strip() for b in settings.kafka.bootstrap_servers.split(",") if b.strip()]


def kafka_source(settings: Settings, topics: list[str], tuning: PipelineTuning) -> KafkaSource:
    """Tailing source; offsets live in Bytewax recovery snapshots, not in a consumer group.

    Errors are emitted into the flow (counted and skipped there) instead of crashing the
    worker on a transient broker hiccup.
    """
    add_config: dict[str, Any] = {
        key: value
        for key, value in settings.kafka.client_config().items()
        if key != "bootstrap.servers"
    }
    add_config.update({"fetch.wait.max.ms": 50, "queued.min.messages": 20000})
    return KafkaSource(
        brokers(settings),
        topics,
        tail=True,
        add_config=add_config,
        batch_size=tuning.kafka_batch_size,
        raise_on_errors=False,
    )


def kafka_sink(settings: Settings) -> KafkaSink:
    """One producer for every output: each KafkaSinkMessage names its own topic."""
    config = kafka_producer_config(settings, **{"linger.ms": 20, "batch.num.messages": 10000})
    config.pop("bootstrap.servers", None)
    return KafkaSink(brokers(settings), topic=None, add_config=config)


def next_offsets(batch: list[Any]) -> dict[tuple[str, int], int]:
    """Per (topic, partition): the offset after the last message of a batch (for lag)."""
    offsets: dict[tuple[str, int], int] = {}
    for msg in batch:
        if isinstance(msg, KafkaSourceMessage) and msg.topic is not None and msg.offset is not None:
            offsets[(msg.topic, msg.partition or 0)] = msg.offset + 1
    return offsets
