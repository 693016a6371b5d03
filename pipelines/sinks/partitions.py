"""Which partitions a ClickHouse sink reads, assigned by the sink itself (no group join).

A consumer-group join costs a restart the broker's initial rebalance delay (~3 s on an
empty group, Kafka's ``group.initial.rebalance.delay.ms`` and Tansu alike) before the
first fetch. Sinks are started by ``kibamail pipelines`` with a fixed place (the
Bytewax process id and the local sink index), so, like the dataflows' Kafka sources,
each takes a deterministic share: partition ``p`` of the ``t``-th topic (sorted by
name) belongs to sink ``(t + p) % count``. Adding partitions never moves an existing
one; shifting by the topic's position spreads single-partition topics over the sinks.
The offsets still live in the sink's group (committed offsets, visible as lag), read
once per newly owned partition when it is assigned.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

# How often a running sink looks for partitions added to its topics.
PARTITION_CHECK_SECONDS = 30.0
METADATA_TIMEOUT_SECONDS = 10.0


def owned(partitions: dict[str, list[int]], index: int, count: int) -> list[tuple[str, int]]:
    """Sink ``index`` of ``count``'s share of ``{topic: partition ids}``."""
    if not 0 <= index < count:
        raise ValueError(f"sink index {index} outside 0..{count - 1}")
    return [
        (topic, partition)
        for shift, topic in enumerate(sorted(partitions))
        for partition in sorted(partitions[topic])
        if (shift + partition) % count == index
    ]


class Assigner:
    """Assigns this sink's partitions to ``consumer``, each at the group's committed
    offset (the configured reset when none); ``check`` again picks up new partitions."""

    def __init__(self, consumer: Any, topics: list[str], index: int, count: int, reset: str):
        owned({}, index, count)  # validates index/count before the first broker call
        self.consumer, self.topics, self.index, self.count = consumer, topics, index, count
        self.reset = reset
        self.assigned: set[tuple[str, int]] = set()

    def _partitions(self) -> dict[str, list[int]]:
        metadata = self.consumer.list_topics(timeout=METADATA_TIMEOUT_SECONDS)
        found: dict[str, list[int]] = {}
        for name in self.topics:
            topic = metadata.topics.get(name)
            if topic is not None and topic.error is None:
                found[name] = list(topic.partitions)
            else:  # not created yet: the next check assigns it; its share stays put
                found[name] = []
        return found

    def check(self, *, paused: bool = False, raise_errors: bool = False) -> list[Any]:
        """Assign owned partitions not assigned yet; returns them (TopicPartitions).

        A broker error is raised at start (the supervisor restarts the sink) and logged
        later (the next check retries). A partition whose committed offset could not be
        read is not assigned: starting it at the reset would re-read or skip rows.
        """
        from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, TopicPartition

        try:
            new = [
                where
                for where in owned(self._partitions(), self.index, self.count)
                if where not in self.assigned
            ]
            if not new:
                return []
            committed = self.consumer.committed(
                [TopicPartition(t, p) for t, p in new], timeout=METADATA_TIMEOUT_SECONDS
            )
        except Exception:
            if raise_errors:
                raise
            log.exception("sink %d/%d: partition check failed; retrying", self.index, self.count)
            return []
        reset = OFFSET_END if self.reset in ("latest", "largest", "end") else OFFSET_BEGINNING
        start = [
            TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else reset)
            for tp in committed
            if tp.error is None
        ]
        if len(start) != len(committed):
            failed = [(tp.topic, tp.partition, str(tp.error)) for tp in committed if tp.error]
            if raise_errors:
                raise RuntimeError(f"committed offsets unreadable: {failed}")
            log.error("sink %d/%d: offsets unreadable: %s", self.index, self.count, failed)
        if not start:
            return []
        self.consumer.incremental_assign(start)
        if paused:  # backpressure holds every partition, new ones too
            self.consumer.pause(start)
        self.assigned.update((tp.topic, tp.partition) for tp in start)
        log.info(
            "sink %d/%d assigned %s",
            self.index,
            self.count,
            [(tp.topic, tp.partition, tp.offset) for tp in start],
        )
        return start
