"""The ClickHouse side of the sink: one batch's inserts, retried until acknowledged.

``insert_batch`` runs on the sink's insert thread while the consumer loop reads and
checks the next batch (the loop commits a batch's offsets only once this returned True).
ClickHouse down: it retries with capped backoff until the batch is acknowledged or
abandoned (a revoke). Rows ClickHouse refuses as data are bisected out and handed to
``dead_letter``. Only this thread uses the insert client.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from kibamail.contracts import ClickHouseTable, Topic
from pipelines.metrics import ERRORS, SINK_BACKPRESSURE, SINK_INSERT_SECONDS, SINK_ROWS
from pipelines.sinks.arrow_rows import ArrowShape, arrow_stream, describe
from pipelines.sinks.rows import INSERT_SETTINGS, SINK_TABLES, Batch, is_data_error

log = logging.getLogger(__name__)

FLOW = "clickhouse_sink"
# Topics whose plain fetches go to ClickHouse as Arrow (measured and tested; the other
# topics are small and keep JSONEachRow).
ARROW_TOPICS = frozenset({Topic.CLICKHOUSE_MESSAGES})
DESCRIBE_RETRY_SECONDS = 10.0

DeadLetter = Callable[[str, bytes | None, bytes, str], None]


class Inserter:
    def __init__(
        self,
        client_factory: Callable[[], Any],
        database: str,
        retry_max_seconds: float,
        dead_letter: DeadLetter,
        arrow: bool = True,
    ) -> None:
        self._factory = client_factory
        self._client: Any = None
        self._database = database
        self._retry_max = retry_max_seconds
        self._dead_letter = dead_letter
        self._arrow = arrow
        self._shapes: dict[Topic, ArrowShape | None] = {}
        self._describe_after = 0.0
        self.inserts = 0

    def _ch(self) -> Any:
        if self._client is None:
            self._client = self._factory()
        return self._client

    def arrow_shape(self, topic: Topic, may_ask: bool) -> ArrowShape | None:
        """The topic's Arrow shape from its table's columns (asked once; None: JSON only).

        ``may_ask``: no insert is in flight, so the client is free to ask ClickHouse."""
        if not self._arrow or topic not in ARROW_TOPICS:
            return None
        if topic in self._shapes:
            return self._shapes[topic]
        if not may_ask or time.monotonic() < self._describe_after:
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

    def insert_batch(self, batch: Batch) -> bool:
        """Every table's rows of the batch; False if the batch was abandoned meanwhile."""
        for topic, rows in batch.rows.items():
            if rows and not self._insert_until_acknowledged(topic, rows, batch):
                return False
        return not batch.abandoned.is_set()

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
        """Retry until ClickHouse answers (backpressure); False if the batch was abandoned."""
        table, _model = SINK_TABLES[topic]
        token = batch.dedup_token(topic)
        tables = batch.arrow_tables(topic)
        arrow = arrow_stream(tables) if tables else None
        backoff = 0.1
        waiting = False
        try:
            while not batch.abandoned.is_set():
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
                if not waiting:
                    SINK_BACKPRESSURE.set(1)
                    waiting = True
                batch.abandoned.wait(backoff)
                backoff = min(backoff * 2, self._retry_max)
            return False
        finally:
            if waiting:
                SINK_BACKPRESSURE.set(0)

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
