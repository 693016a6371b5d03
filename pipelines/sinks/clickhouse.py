"""Kafka ``clickhouse_*`` (and other warehouse-bound) topics -> ClickHouse raw tables.

A plain confluent-kafka consumer loop rather than a Bytewax dataflow, because the
contract here is "commit the Kafka offset only after ClickHouse acknowledged the rows":
a commit to the ``GROUP_ID`` group after each acknowledged insert says exactly that and
is visible to any Kafka tool as consumer lag. Bytewax keeps offsets in its own recovery
store, which would hide the lag and tie the sink's progress to dataflow epochs.

* No group join: sink ``index`` of ``count`` assigns its own share of the partitions
  (``partitions.py``) from the group's committed offsets, so a restart does not wait
  for the broker's initial rebalance delay (~3 s on an empty group); new partitions are
  picked up by a metadata check every ``PARTITION_CHECK_SECONDS``. ``member=None``
  joins the group instead (elastic consumers; a revoke drops the unacknowledged batch).

* Batches flush by size (``sink_batch_rows``) or age (``sink_flush_seconds``), one insert
  per table, with an insert dedup token: ArrowStream for plain fetches of the hot topic
  (``arrow_rows.py``; ClickHouse parses it ~3x cheaper), JSONEachRow otherwise.
* Pipelined: a batch is inserted on the insert thread (``inserts.py``) while the loop
  reads and checks the next one; at most one batch in flight and one filling, so memory
  stays bounded by two batches. Offsets are committed in order, each batch's only after
  ClickHouse acknowledged it.
* Idempotent: rows are keyed by ``event_id`` in ReplacingMergeTree tables, so a replay
  (crash between insert and commit) gives the same rows.
* ClickHouse down: the insert thread retries with capped backoff; once the next batch is
  full too, the consumer pauses its partitions (still polling) until the insert went
  through. Rows ClickHouse refuses as data are bisected out and dead-lettered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from kibamail.contracts import Topic, dead_letter
from kibamail.settings import Settings
from pipelines.metrics import (
    CONSUMER_LAG,
    DEAD_LETTERS,
    ERRORS,
    EVENTS_IN,
    SINK_BUFFERED_ROWS,
    note_offsets,
)
from pipelines.sinks.inserts import FLOW, Inserter
from pipelines.sinks.partitions import PARTITION_CHECK_SECONDS, Assigner
from pipelines.sinks.rows import (
    SINK_TABLES,
    TOPICS_BY_NAME,
    Batch,
    envelope_error,
    envelopes_valid,
)

log = logging.getLogger(__name__)

GROUP_ID = "kibamail-clickhouse-sink"

ClientFactory = Callable[[], Any]


class ClickHouseSink:
    """The sink loop; ``run`` until ``stop`` is set, ``poll_once`` for tests."""

    def __init__(
        self,
        settings: Settings,
        *,
        topics: list[Topic] | None = None,
        client_factory: ClientFactory | None = None,
        group_id: str = GROUP_ID,
        batch_rows: int | None = None,
        flush_seconds: float | None = None,
        member: tuple[int, int] | None = (0, 1),
    ) -> None:
        from confluent_kafka import Consumer, Producer

        from kibamail.clients import clickhouse_client, kafka_consumer_config, kafka_producer_config

        self.settings = settings
        self.topics = topics or list(SINK_TABLES)
        self.batch_rows = batch_rows or settings.pipelines.sink_batch_rows
        self.flush_seconds = (
            flush_seconds if flush_seconds is not None else settings.pipelines.sink_flush_seconds
        )
        tuning = settings.pipelines.tuning
        self._inserter = Inserter(
            client_factory or (lambda: clickhouse_client(settings)),
            settings.clickhouse.database,
            tuning.sink_retry_max_seconds,
            self._dead_letter,
            arrow=tuning.sink_arrow,
        )
        config = kafka_consumer_config(
            group_id,
            settings,
            **{
                "fetch.wait.max.ms": 50,
                "queued.min.messages": 20000,
                # Whole batches per fetch (the 1 MiB default is ~2,000 rows a round trip).
                "max.partition.fetch.bytes": 8 * 1024 * 1024,
                "fetch.max.bytes": 64 * 1024 * 1024,
            },
        )
        self._consumer = Consumer(config)
        self._producer = Producer(kafka_producer_config(settings))
        self._batch = Batch()
        self._inflight: tuple[Batch, Future[bool]] | None = None
        self._paused = False
        self._insert_thread = ThreadPoolExecutor(1, thread_name_prefix="clickhouse-insert")
        names = [t.value for t in self.topics]
        self._assigner: Assigner | None = None
        if member is None:
            self._consumer.subscribe(names, on_revoke=self._on_revoke)
        else:
            self._assigner = Assigner(self._consumer, names, *member, config["auto.offset.reset"])
            self._assigner.check(raise_errors=True)
            self._next_check = time.monotonic() + PARTITION_CHECK_SECONDS

    @property
    def inserts(self) -> int:
        """Inserts ClickHouse acknowledged so far."""
        return self._inserter.inserts

    # -- Kafka side ---------------------------------------------------------------

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        """(Group mode) uncommitted rows of revoked partitions are re-read by their new
        owner: drop ours."""
        if self._batch.offsets:
            log.info("partitions revoked; dropping %d unacknowledged rows", self._batch.count)
        self._batch = Batch()
        if self._inflight is not None:
            self._inflight[0].abandoned.set()  # may land (a duplicate), never committed
        self._note_buffered()

    def poll_once(self, timeout: float = 0.1) -> int:
        """Read what is there (up to the batch bound), flush when due; returns rows read."""
        self._reap()
        if self._assigner is not None and time.monotonic() >= self._next_check:
            self._next_check = time.monotonic() + PARTITION_CHECK_SECONDS
            self._assigner.check(paused=self._paused)
        if self._inflight is None and self._due():
            self._submit()
        if self._inflight is not None and self._batch.count >= self.batch_rows:
            self._hold(timeout)  # both batches full: wait for ClickHouse (backpressure)
            self._reap()
            return 0
        room = max(1, min(10_000, self.batch_rows - self._batch.count))
        # Messages without an error always carry topic, partition and offset.
        messages: list[Any] = self._consumer.consume(room, timeout)
        read = 0
        if self._add_clean_run(messages):
            read, messages = len(messages), []
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() != err._PARTITION_EOF:
                    ERRORS.labels(FLOW, "kafka").inc()
                    log.warning("kafka error in sink: %s", err)
                continue
            topic = TOPICS_BY_NAME[msg.topic()]
            self._batch.add(topic, msg.partition(), msg.offset(), self._row(topic, msg))
            read += 1
        if read:
            EVENTS_IN.labels(FLOW).inc(read)
            self._note_buffered()
        if self._inflight is None and self._due():
            self._submit()
        return read

    def _add_clean_run(self, messages: list[Any]) -> bool:
        """The usual fetch (one partition, in order, every envelope valid) as one run,
        checked column-wise (as Arrow when it can be); False: take the per-message path."""
        from confluent_kafka import Message

        if not messages or any(map(Message.error, messages)):
            return False
        topics, partitions = map(Message.topic, messages), map(Message.partition, messages)
        where: set[tuple[Any, Any]] = set(zip(topics, partitions, strict=True))
        if len(where) != 1:
            return False
        [(name, partition)] = where
        topic = TOPICS_BY_NAME[name or ""]
        values: list[Any] = list(map(Message.value, messages))
        offsets: list[Any] = list(map(Message.offset, messages))
        if offsets != list(range(offsets[0], offsets[0] + len(offsets))):
            return False
        shape = self._inserter.arrow_shape(topic, may_ask=self._inflight is None)
        table = shape.parse(values) if shape is not None else None
        if table is None and not envelopes_valid(SINK_TABLES[topic][1], values):
            return False
        self._batch.add_run(topic, partition, offsets[0], offsets[-1], values, table)
        return True

    def _row(self, topic: Topic, msg: Any) -> bytes | None:
        """The message's own JSON as the row, or None if dead-lettered.

        These topics carry what our dataflows serialized from validated models, so the
        sink checks the envelope (JSON object, supported version, every required field
        and the dedup key present) and lets ClickHouse check the types: a row it
        refuses is bisected out and dead-lettered with ClickHouse's reason. Re-running
        the full model validation here cost as much as everything else in the sink.
        """
        value = msg.value() or b""
        reason = envelope_error(SINK_TABLES[topic][1], value)
        if reason is None:
            return value
        self._dead_letter(topic.value, msg.key(), value, reason)
        return None

    def _dead_letter(self, topic: str, key: bytes | None, value: bytes, reason: str) -> None:
        DEAD_LETTERS.labels(FLOW, reason.split(":", 1)[0][:40]).inc()
        self._producer.produce(Topic.DEAD_LETTER.value, dead_letter(topic, value, reason), key=key)
        self._producer.poll(0)

    def _due(self) -> bool:
        if not self._batch.offsets:
            return False
        if self._batch.count >= self.batch_rows:
            return True
        return time.monotonic() - self._batch.started >= self.flush_seconds

    def _note_buffered(self) -> None:
        inflight = self._inflight[0].count if self._inflight is not None else 0
        SINK_BUFFERED_ROWS.set(self._batch.count + inflight)

    # -- handing batches to the insert thread -------------------------------------------

    def _submit(self) -> None:
        batch, self._batch = self._batch, Batch()
        future = self._insert_thread.submit(self._inserter.insert_batch, batch)
        self._inflight = (batch, future)

    def _reap(self) -> bool | None:
        """Commit the in-flight batch once acknowledged: True; abandoned: False; None:
        nothing finished. An insert-thread error is raised here."""
        if self._inflight is None or not self._inflight[1].done():
            return None
        batch, future = self._inflight
        acknowledged = future.result()
        self._inflight = None
        self._resume()
        if not acknowledged or batch.abandoned.is_set():
            return False
        if self._producer.flush(30) > 0:
            raise RuntimeError("dead-letter producer could not deliver; not committing")
        from confluent_kafka import TopicPartition

        self._commit([TopicPartition(t, p, o) for (t, p), o in batch.offsets.items()])
        note_offsets(FLOW, batch.offsets)
        self._note_lag(batch.offsets)
        self._note_buffered()
        return True

    def _hold(self, timeout: float) -> None:
        """Partitions paused (still polling) until the in-flight insert is done."""
        if not self._paused:
            self._consumer.pause(self._consumer.assignment())
            self._paused = True
        # Revocations arrive through here; a message read now (a fresh assignment) is
        # re-read later, never skipped.
        for msg in self._consumer.consume(1, min(timeout, 0.1)):
            self._rewind(msg)

    def _resume(self) -> None:
        if self._paused:
            self._consumer.resume(self._consumer.assignment())
            self._paused = False

    def flush(self) -> bool:
        """Insert and commit everything read so far (blocks); False if a revoke dropped a
        batch meanwhile."""
        acknowledged = self._wait()
        if self._batch.offsets:
            self._submit()
            acknowledged = self._wait() and acknowledged
        return acknowledged

    def _wait(self) -> bool:
        """Until the in-flight batch (if any) is done; False if it was abandoned."""
        while self._inflight is not None:
            if self._inflight[1].done():
                return bool(self._reap())
            self._hold(0.1)
        return True

    def _commit(self, offsets: list[Any]) -> None:
        self._consumer.commit(offsets=offsets, asynchronous=False)

    def _note_lag(self, offsets: dict[tuple[str, int], int]) -> None:
        """Lag from the high watermark of the last fetch response (no extra broker call)."""
        from confluent_kafka import TopicPartition

        for (topic, partition), offset in offsets.items():
            try:
                _low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), cached=True
                )
            except Exception:
                continue
            if high >= 0:
                CONSUMER_LAG.labels(FLOW, topic, str(partition)).set(max(0, high - offset))

    def _rewind(self, msg: Any) -> None:
        """A message read while paused (a fresh assignment) is re-read later, never skipped."""
        from confluent_kafka import TopicPartition

        if msg.error() is None:
            where = TopicPartition(msg.topic(), msg.partition(), msg.offset())
            self._consumer.pause([TopicPartition(msg.topic(), msg.partition())])
            self._consumer.seek(where)

    def prepare(self) -> None:
        """Connect to ClickHouse and learn the Arrow shapes now, while the consumer starts
        fetching, rather than after the first fetch."""
        for topic in self.topics:
            self._inserter.arrow_shape(topic, may_ask=self._inflight is None)

    def run(self, stop: threading.Event) -> None:
        try:
            self.prepare()
            while not stop.is_set():
                self.poll_once()
            if self._batch.offsets or self._inflight is not None:
                self.flush()
        finally:
            self.close()

    def close(self) -> None:
        if self._inflight is not None:
            self._inflight[0].abandoned.set()
        self._insert_thread.shutdown(wait=True)
        self._producer.flush(10)
        self._consumer.close()
