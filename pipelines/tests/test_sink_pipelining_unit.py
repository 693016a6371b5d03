"""The sink inserts one batch while reading the next: offsets still commit in order, only
after ClickHouse acknowledged, never for a batch a revoke abandoned; two batches at most."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import Message

from kibamail.contracts import CorrelatedMessageEvent, MessageStatus, Topic, serialize
from kibamail.settings import Settings
from pipelines.sinks.clickhouse import ClickHouseSink

pytestmark = pytest.mark.unit

TOPIC = Topic.CLICKHOUSE_MESSAGES.value


def row(i: int) -> bytes:
    return serialize(
        CorrelatedMessageEvent(team_id="t", message_id=f"m{i}", status=MessageStatus.DELIVERED)
    )


class FakeConsumer:
    """Hands out one message per consume call from partition 0; records what the sink does."""

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        self.next_offset, self.paused = 0, False
        self.commits: list[Any] = []

    def subscribe(self, *_args: Any, **_kwargs: Any) -> None: ...

    def list_topics(self, *_args: Any, **_kwargs: Any) -> Any:
        return SimpleNamespace(
            topics={TOPIC: SimpleNamespace(error=None, partitions={0: SimpleNamespace(id=0)})}
        )

    def committed(self, partitions: list[Any], timeout: float) -> list[Any]:
        return partitions  # no committed offset (-1001): start at the reset

    def incremental_assign(self, _partitions: list[Any]) -> None: ...

    def consume(self, count: int, timeout: float) -> list[Message]:
        if self.paused:
            time.sleep(timeout)  # as a real poll with nothing to return
            return []
        offset, self.next_offset = self.next_offset, self.next_offset + 1
        return [Message(topic=TOPIC, partition=0, offset=offset, value=row(offset), key=None)]

    def commit(self, offsets: list[Any], asynchronous: bool) -> None:
        self.commits.append([(tp.topic, tp.partition, tp.offset) for tp in offsets])

    def assignment(self) -> list[Any]:
        return []

    def pause(self, _partitions: list[Any]) -> None:
        self.paused = True

    def resume(self, _partitions: list[Any]) -> None:
        self.paused = False

    def get_watermark_offsets(self, *_args: Any, **_kwargs: Any) -> tuple[int, int]:
        return (-1, -1)

    def close(self) -> None: ...


class FakeProducer:
    def __init__(self, *_args: Any, **_kwargs: Any) -> None: ...

    def flush(self, _timeout: float = 0) -> int:
        return 0


class GatedClient:
    """Each insert waits for the test to open the gate; no describe (JSON rows)."""

    def __init__(self) -> None:
        self.gate, self.started = threading.Semaphore(0), threading.Event()
        self.inserted: list[Any] = []

    def query(self, *_args: Any, **_kwargs: Any) -> Any:
        raise ConnectionRefusedError("no describe in this test")

    def raw_insert(self, table: str, insert_block: bytes, **_kwargs: Any) -> None:
        self.started.set()
        assert self.gate.acquire(timeout=10)
        self.inserted.append(insert_block.count(b"\n") + 1)


@pytest.fixture
def sink(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ClickHouseSink, GatedClient]]:
    import confluent_kafka

    monkeypatch.setattr(confluent_kafka, "Consumer", FakeConsumer)
    monkeypatch.setattr(confluent_kafka, "Producer", FakeProducer)
    client = GatedClient()
    made = ClickHouseSink(
        Settings(),
        topics=[Topic.CLICKHOUSE_MESSAGES],
        client_factory=lambda: client,
        batch_rows=2,
        flush_seconds=60,
    )
    yield made, client
    client.gate.release(10)
    made.close()


def poll_until(sink: ClickHouseSink, done: Any) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if done():
            return
        sink.poll_once(0.01)
        time.sleep(0.001)  # let the insert thread run
    raise AssertionError("condition not reached")


def test_next_batch_fills_while_one_is_inserted_and_commits_stay_in_order(
    sink: tuple[ClickHouseSink, GatedClient],
) -> None:
    made, client = sink
    consumer: FakeConsumer = made._consumer  # type: ignore[assignment]
    poll_until(made, client.started.is_set)  # batch 1 (offsets 0-1) in flight
    poll_until(made, lambda: consumer.paused)  # batch 2 (2-3) full: consumption paused
    assert made._batch.count == 2 and consumer.next_offset == 4
    assert consumer.commits == []  # nothing acknowledged yet
    client.gate.release()  # ClickHouse acknowledges batch 1
    poll_until(made, lambda: len(consumer.commits) == 1)
    assert consumer.commits == [[(TOPIC, 0, 2)]]
    client.gate.release()
    poll_until(made, lambda: len(consumer.commits) == 2)
    assert consumer.commits[1] == [(TOPIC, 0, 4)]
    assert client.inserted == [2, 2]


def test_a_revoke_abandons_the_batch_in_flight_without_committing_it(
    sink: tuple[ClickHouseSink, GatedClient],
) -> None:
    made, client = sink
    consumer: FakeConsumer = made._consumer  # type: ignore[assignment]
    poll_until(made, client.started.is_set)
    assert made._inflight is not None
    abandoned = made._inflight[0]
    made._on_revoke(consumer, [])
    assert made._batch.count == 0 and abandoned.abandoned.is_set()
    client.gate.release()  # the insert lands anyway (a replay collapses by event_id)
    poll_until(made, lambda: made._inflight is None or made._inflight[0] is not abandoned)
    assert consumer.commits == []
