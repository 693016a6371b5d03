"""Sinks assign their own partitions: every partition to exactly one sink, stable when
partitions are added, new ones picked up at the group's offsets, places that agree."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from kibamail.settings import PipelineSettings, Settings
from pipelines.run import sink_member
from pipelines.sinks.partitions import Assigner, owned

pytestmark = pytest.mark.unit


def test_every_partition_goes_to_exactly_one_sink() -> None:
    layout = {"b": list(range(5)), "a": list(range(3)), "c": [0]}
    for count in (1, 2, 3, 4):
        shares = [owned(layout, index, count) for index in range(count)]
        flat = [where for share in shares for where in share]
        assert len(flat) == len(set(flat)) == 9
        assert set(flat) == {(t, p) for t, ps in layout.items() for p in ps}
    # single-partition topics spread over the sinks instead of piling on sink 0
    assert owned({"x": [0], "y": [0]}, 0, 2) == [("x", 0)]
    assert owned({"x": [0], "y": [0]}, 1, 2) == [("y", 0)]


def test_added_partitions_never_move_existing_ones() -> None:
    before = {"a": [0, 1, 2], "b": [0, 1]}
    after = {"a": list(range(6)), "b": list(range(4))}
    for index in range(3):
        assert set(owned(before, index, 3)) <= set(owned(after, index, 3))


def test_a_place_outside_the_cluster_is_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        owned({"a": [0]}, 2, 2)
    with pytest.raises(ValueError, match="outside"):
        owned({"a": [0]}, -1, 2)


class MetadataConsumer:
    """Partitions per topic as the broker lists them; committed offsets per partition."""

    def __init__(self, layout: dict[str, int], offsets: dict[tuple[str, int], int]) -> None:
        self.layout, self.offsets = layout, offsets
        self.assigned: list[tuple[str, int, int]] = []
        self.paused: list[tuple[str, int]] = []

    def list_topics(self, timeout: float) -> Any:
        return SimpleNamespace(
            topics={
                name: SimpleNamespace(error=None, partitions={p: None for p in range(n)})
                for name, n in self.layout.items()
            }
        )

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[Any]:
        return [
            TopicPartition(tp.topic, tp.partition, self.offsets.get((tp.topic, tp.partition), -1))
            for tp in partitions
        ]

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned += [(tp.topic, tp.partition, tp.offset) for tp in partitions]

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused += [(tp.topic, tp.partition) for tp in partitions]


def test_new_partitions_are_assigned_at_the_groups_offsets() -> None:
    consumer = MetadataConsumer({"a": 2, "missing": 0}, {("a", 0): 41})
    assigner = Assigner(consumer, ["a", "missing"], 0, 1, "earliest")
    assigner.check(raise_errors=True)
    assert consumer.assigned == [("a", 0, 41), ("a", 1, OFFSET_BEGINNING)]
    assert assigner.check() == []  # nothing new: no second assignment
    consumer.layout = {"a": 3, "missing": 2}  # partitions added, a topic created
    assigner.check(paused=True)
    added = [("a", 2), ("missing", 0), ("missing", 1)]
    assert consumer.assigned[2:] == [(t, p, OFFSET_BEGINNING) for t, p in added]
    assert consumer.paused == added  # backpressure holds them too
    assert assigner.assigned == {("a", 0), ("a", 1), ("a", 2), ("missing", 0), ("missing", 1)}


def test_a_failed_check_assigns_nothing_and_retries() -> None:
    consumer = MetadataConsumer({"a": 1}, {})

    def down(timeout: float) -> Any:
        raise RuntimeError("broker down")

    consumer.list_topics = down  # type: ignore[method-assign]
    assigner = Assigner(consumer, ["a"], 0, 1, "earliest")
    with pytest.raises(RuntimeError):
        assigner.check(raise_errors=True)
    assert assigner.check() == [] and consumer.assigned == []
    del consumer.list_topics
    assigner.check()
    assert consumer.assigned == [("a", 0, OFFSET_BEGINNING)]


def test_sink_places_cover_the_cluster_once() -> None:
    addresses = ["h0:2101", "h1:2101", "h2:2101"]
    places = [
        sink_member(
            Settings(pipelines=PipelineSettings(workers=2, addresses=addresses, process_id=pid)),
            local,
        )
        for pid in range(3)
        for local in range(2)
    ]
    assert places == [(i, 6) for i in range(6)]
    assert sink_member(Settings(), 0) == (0, 1)
    with pytest.raises(ValueError):
        sink_member(Settings(pipelines=PipelineSettings(workers=2)), 2)
    with pytest.raises(ValueError):  # a process id beyond the address list
        sink_member(Settings(pipelines=PipelineSettings(addresses=addresses, process_id=3)), 0)
