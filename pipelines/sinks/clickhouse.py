"""Kafka ``clickhouse_*`` (and other warehouse-bound) topics -> ClickHouse raw tables.

A plain confluent-kafka consumer-group loop rather than a Bytewax dataflow, because the
contract here is "commit the Kafka offset only after ClickHouse acknowledged the rows":
a group commit after each acknowledged insert says exactly that, is visible to any
Kafka tool as consumer lag, and scales out by adding consumers to the group. Bytewax
keeps offsets in its own recovery store, which would hide the lag and tie the sink's
progress to dataflow epochs.

* Batches flush by size (``sink_batch_rows``) or age (``sink_flush_seconds``), one insert
  per table, with an insert dedup token: ArrowStream for plain fetches of the hot topic
  (``arrow_rows.py``; ClickHouse parses it ~3x cheaper), JSONEachRow otherwise.
* Idempotent: rows are keyed by ``event_id`` in ReplacingMergeTree tables, so a replay
  (crash between insert and commit) gives the same rows.
* ClickHouse down: the consumer pauses its partitions (still polling, so it keeps its
  group membership), retries with capped backoff, and resumes; memory stays bounded
  by one batch. Rows ClickHouse refuses as data are bisected out and dead-lettered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kibamail.settings import Settings
from pipelines.config import PipelineTuning, get_tuning
from pipelines.contracts import (
    ClickHouseTable,
    Topic,
    dead_letter,
)
from pipelines.metrics import (
    CONSUMER_LAG,
    DEAD_LETTERS,
    ERRORS,
    EVENTS_IN,
    SINK_BACKPRESSURE,
    SINK_BUFFERED_ROWS,
    SINK_INSERT_SECONDS,
    SINK_ROWS,
    note_offsets,
)
from pipelines.sinks.arrow_rows import ArrowShape, arrow_stream, describe
from pipelines.sinks.rows import (
    INSERT_SETTINGS,
    SINK_TABLES,
    TOPICS_BY_NAME,
    Batch,
    envelope_error,
    envelopes_valid,
    is_data_error,
)

log = logging.getLogger(__name__)

FLOW = "clickhouse_sink"
GROUP_ID = "kibamail-clickhouse-sink"
# Topics whose plain fetches go to ClickHouse as Arrow (measured and tested; the other
# topics are small and keep JSONEachRow).
ARROW_TOPICS = frozenset({Topic.CLICKHOUSE_MESSAGES})
DESCRIBE_RETRY_SECONDS = 10.0

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
        tuning: PipelineTuning | None = None,
    ) -> None:
        from confluent_kafka import Consumer, Producer

        from kibamail.clients import clickhouse_client, kafka_consumer_config, kafka_producer_config

        self.settings = settings
        self.topics = topics or list(SINK_TABLES)
        self._client_factory = client_factory or (lambda: clickhouse_client(settings))
        self._client: Any = None
        self.batch_rows = batch_rows or settings.pipelines.sink_batch_rows
        self.flush_seconds = (
            flush_seconds if flush_seconds is not None else settings.pipelines.sink_flush_seconds
        )
        tuning = tuning or get_tuning()
        self._retry_max = tuning.sink_retry_max_seconds
        self._arrow = tuning.sink_arrow
        self._shapes: dict[Topic, ArrowShape | None] = {}
        self._describe_after = 0.0
        self._database = settings.clickhouse.database
        self._consumer = Consumer(
            kafka_consumer_config(
                group_id,
                settings,
                **{"fetch.wait.max.ms": 50, "queued.min.messages": 20000},
            )
        )
        self._producer = Producer(kafka_producer_config(settings))
        self._batch = Batch()
        self._lock = threading.Lock()
        self._consumer.subscribe([t.value for t in self.topics], on_revoke=self._on_revoke)
        self.inserts = 0

    # -- Kafka side ---------------------------------------------------------------

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        """Uncommitted rows of revoked partitions are re-read by their new owner: drop ours."""
        if self._batch.offsets:
            log.info("partitions revoked; dropping %d unacknowledged rows", self._batch.count)
        self._batch = Batch()
        SINK_BUFFERED_ROWS.set(0)

    def poll_once(self, timeout: float = 0.1) -> int:
        """Read what is there (up to the batch bound), flush when due; returns rows read."""
        room = max(1, min(10_000, self.batch_rows - self._batch.count))
        messages = self._consumer.consume(room, timeout)
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
            SINK_BUFFERED_ROWS.set(self._batch.count)
        if self._due():
            self.flush()
        return read

    def _add_clean_run(self, messages: list[Any]) -> bool:
        """The usual fetch (one partition, in order, every envelope valid) as one run,
        checked column-wise in C-level loops; False: take the per-message path."""
        from confluent_kafka import Message

        if not messages or any(map(Message.error, messages)):
            return False
        topics, partitions = map(Message.topic, messages), map(Message.partition, messages)
        where = set(zip(topics, partitions, strict=True))
        if len(where) != 1:
            return False
        [(name, partition)] = where
        topic = TOPICS_BY_NAME[name]
        values = list(map(Message.value, messages))
        offsets = list(map(Message.offset, messages))
        if offsets != list(range(offsets[0], offsets[0] + len(offsets))):
            return False
        shape = self._arrow_shape(topic)
        table = shape.parse(values) if shape is not None else None
        if table is None and not envelopes_valid(SINK_TABLES[topic][1], values):
            return False
        self._batch.add_run(topic, partition, offsets[0], offsets[-1], values, table)
        return True

    def _arrow_shape(self, topic: Topic) -> ArrowShape | None:
        """The topic's Arrow shape, from its table's columns (asked once; None: JSON only)."""
        if not self._arrow or topic not in ARROW_TOPICS:
            return None
        if topic in self._shapes:
            return self._shapes[topic]
        if time.monotonic() < self._describe_after:
            return None
        table, model = SINK_TABLES[topic]
        try:
            columns = describe(self._ch(), self._database, table.value)
        except Exception as exc:  # ClickHouse down: JSON rows meanwhile, ask again later
            log.warning("cannot describe %s (%s); JSONEachRow for now", table.value, exc)
            self._client = None
            self._describe_after = time.monotonic() + DESCRIBE_RETRY_SECONDS
            return None
        if not columns:
            self._describe_after = time.monotonic() + DESCRIBE_RETRY_SECONDS
            return None
        self._shapes[topic] = ArrowShape.of(model, columns)
        return self._shapes[topic]

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

    def flush(self) -> bool:
        """Insert every table's rows, then commit; False if interrupted by a revoke."""
        from confluent_kafka import TopicPartition

        batch = self._batch
        for topic, rows in batch.rows.items():
            if rows and not self._insert_until_acknowledged(topic, rows, batch):
                return False
        if batch is not self._batch:
            return False
        if self._producer.flush(30) > 0:
            raise RuntimeError("dead-letter producer could not deliver; not committing")
        offsets = [TopicPartition(t, p, o) for (t, p), o in batch.offsets.items()]
        self._commit(offsets)
        note_offsets(FLOW, batch.offsets)
        self._note_lag(batch.offsets)
        self._batch = Batch()
        SINK_BUFFERED_ROWS.set(0)
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

    # -- ClickHouse side ------------------------------------------------------------

    def _ch(self) -> Any:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def _insert(
        self, table: ClickHouseTable, rows: list[bytes], token: str, arrow: bytes | None = None
    ) -> None:
        """JSONEachRow of ``rows``, or the same rows as the ``arrow`` stream body."""
        with SINK_INSERT_SECONDS.labels(table.value).time():
            self._ch().raw_insert(
                f"{self._database}.{table.value}",
                insert_block=b"\n".join(rows) if arrow is None else arrow,
                fmt="JSONEachRow" if arrow is None else "ArrowStream",
                settings={**INSERT_SETTINGS, "insert_deduplication_token": token},
            )
        self.inserts += 1
        SINK_ROWS.labels(table.value).inc(len(rows))

    def _insert_until_acknowledged(self, topic: Topic, rows: list[bytes], batch: Batch) -> bool:
        """Retry until ClickHouse answers (backpressure); False if a revoke dropped the batch."""
        table, _model = SINK_TABLES[topic]
        token = batch.dedup_token(topic)
        tables = batch.arrow_tables(topic)
        arrow = arrow_stream(tables) if tables else None
        backoff = 0.1
        paused = False
        try:
            while True:
                try:
                    self._insert(table, rows, token, arrow)
                    return True
                except Exception as exc:
                    if arrow is not None and "Code: " in str(exc):
                        # ClickHouse answered but refused the Arrow body: the same rows as
                        # JSONEachRow decide (and bisect out bad rows); JSON from now on.
                        log.warning("arrow insert into %s refused (%s); using JSON", table, exc)
                        self._shapes[topic] = None
                        arrow = None
                        continue
                    if is_data_error(exc):
                        self._insert_bisecting(topic, table, rows, token)
                        return True
                    ERRORS.labels(FLOW, "clickhouse").inc()
                    log.warning("clickhouse insert failed (%s); retrying in %.1fs", exc, backoff)
                    self._client = None
                if not paused:
                    self._consumer.pause(self._consumer.assignment())
                    SINK_BACKPRESSURE.set(1)
                    paused = True
                deadline = time.monotonic() + backoff
                while time.monotonic() < deadline:
                    # Keep group membership alive; revocations arrive through here.
                    for msg in self._consumer.consume(1, 0.1):
                        self._rewind(msg)
                    if batch is not self._batch:
                        return False
                backoff = min(backoff * 2, self._retry_max)
        finally:
            if paused:
                self._consumer.resume(self._consumer.assignment())
                SINK_BACKPRESSURE.set(0)

    def _rewind(self, msg: Any) -> None:
        """A message read while paused (a fresh assignment) is re-read later, never skipped."""
        from confluent_kafka import TopicPartition

        if msg.error() is None:
            where = TopicPartition(msg.topic(), msg.partition(), msg.offset())
            self._consumer.pause([TopicPartition(msg.topic(), msg.partition())])
            self._consumer.seek(where)

    def _insert_bisecting(
        self, topic: Topic, table: ClickHouseTable, rows: list[bytes], token: str
    ) -> None:
        """Find the rows ClickHouse refuses as data, dead-letter them, insert the rest."""
        if len(rows) == 1:
            try:
                self._insert(table, rows, token)
            except Exception as exc:
                if not is_data_error(exc):
                    raise
                self._dead_letter(topic.value, None, rows[0], f"clickhouse refused row: {exc}")
            return
        middle = len(rows) // 2
        for part, piece in ((0, rows[:middle]), (1, rows[middle:])):
            try:
                self._insert(table, piece, f"{token}#{part}")
            except Exception as exc:
                if not is_data_error(exc):
                    raise
                self._insert_bisecting(topic, table, piece, f"{token}#{part}")

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self.poll_once()
            if self._batch.offsets:
                self.flush()
        finally:
            self.close()

    def close(self) -> None:
        self._producer.flush(10)
        self._consumer.close()
