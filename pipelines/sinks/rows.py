"""What the ClickHouse sink writes: topic -> table, envelope checks, unacknowledged batches.

Split from ``clickhouse.py`` (the consumer loop); the checks come in two forms, one per
message (with the reason for the dead letter) and one column-wise for a whole fetch.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from operator import methodcaller
from typing import Any

import orjson
from pydantic import BaseModel

from kibamail.contracts import (
    SUPPORTED_VERSIONS,
    ClickHouseTable,
    CorrelatedMessageEvent,
    DomainCheckEvent,
    EnrichedClickEvent,
    EnrichedOpenEvent,
    ReputationSignal,
    TeamPauseAuditEvent,
    TeamPauseEvent,
    Topic,
    UnsubscribeEvent,
)

SINK_TABLES: dict[Topic, tuple[ClickHouseTable, type[BaseModel]]] = {
    Topic.CLICKHOUSE_MESSAGES: (ClickHouseTable.MESSAGE_EVENTS, CorrelatedMessageEvent),
    Topic.CLICKHOUSE_EMAIL_OPENS: (ClickHouseTable.EMAIL_OPENS, EnrichedOpenEvent),
    Topic.CLICKHOUSE_EMAIL_CLICKS: (ClickHouseTable.EMAIL_CLICKS, EnrichedClickEvent),
    Topic.UNSUBSCRIBES: (ClickHouseTable.UNSUBSCRIBES, UnsubscribeEvent),
    Topic.REPUTATION_SIGNALS: (ClickHouseTable.REPUTATION_SIGNALS, ReputationSignal),
    Topic.TEAM_PAUSES: (ClickHouseTable.TEAM_PAUSES, TeamPauseEvent),
    Topic.TEAM_PAUSE_AUDIT: (ClickHouseTable.TEAM_PAUSE_AUDIT, TeamPauseAuditEvent),
    Topic.DOMAIN_CHECKS: (ClickHouseTable.DOMAIN_CHECKS, DomainCheckEvent),
}

TOPICS_BY_NAME: dict[str, Topic] = {topic.value: topic for topic in SINK_TABLES}

INSERT_SETTINGS: dict[str, Any] = {
    "input_format_skip_unknown_fields": 1,
    "date_time_input_format": "best_effort",
}

# ClickHouse error codes meaning "these rows are bad", not "the server is unwell".
DATA_ERROR_CODES = (
    "Code: 6.",
    "Code: 26.",
    "Code: 27.",
    "Code: 38.",
    "Code: 41.",
    "Code: 53.",
    "Code: 69.",
    "Code: 70.",
    "Code: 72.",
    "Code: 117.",
    "Code: 321.",
)


def is_data_error(exc: Exception) -> bool:
    text = str(exc)
    return any(code in text for code in DATA_ERROR_CODES)


def _required(model: type[BaseModel]) -> tuple[str, ...]:
    # event_id and occurred_at have defaults in the models, but a row without them would
    # get a different id / time on every replay: the sink requires them.
    names = [name for name, field in model.model_fields.items() if field.is_required()]
    return tuple(dict.fromkeys(["event_id", "occurred_at", *names]))


REQUIRED_FIELDS: dict[type[BaseModel], tuple[str, ...]] = {
    model: _required(model) for _table, model in SINK_TABLES.values()
}


def envelope_error(model: type[BaseModel], value: bytes) -> str | None:
    """Why this payload cannot be a row (in the contract's wording), or None."""
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return f"malformed JSON: {exc}"
    if not isinstance(data, dict):
        return "event must be a JSON object"
    version = data.get("event_version", 1)
    if version not in SUPPORTED_VERSIONS:
        return f"unsupported event_version {version!r}"
    missing = [name for name in REQUIRED_FIELDS[model] if data.get(name) in (None, "")]
    if missing:
        return f"invalid {model.__name__}: " + "; ".join(f"{m}: Field required" for m in missing)
    return None


def envelopes_valid(model: type[BaseModel], values: list[bytes | None]) -> bool:
    """``envelope_error(model, v) is None`` for every value, column by column."""
    try:
        rows = list(map(orjson.loads, values))  # type: ignore[arg-type]  # None: TypeError
    except (ValueError, TypeError):
        return False
    if set(map(type, rows)) != {dict}:
        return False
    if not SUPPORTED_VERSIONS.issuperset(map(methodcaller("get", "event_version", 1), rows)):
        return False
    for name in REQUIRED_FIELDS[model]:
        column = list(map(methodcaller("get", name), rows))
        if None in column or "" in column:
            return False
    return True


@dataclass
class Batch:
    """Rows read but not yet acknowledged, and the offsets to commit once they are."""

    rows: dict[Topic, list[bytes]] = field(default_factory=dict)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    first_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    count: int = 0
    started: float = 0.0
    # The same rows as Arrow tables (arrow_rows.py), one per plain fetch; a topic in
    # ``mixed`` has rows that are not, so its rows go as JSONEachRow.
    arrow: dict[Topic, list[Any]] = field(default_factory=dict)
    mixed: set[Topic] = field(default_factory=set)
    # Set when a revoke drops the batch while its insert runs: stop retrying, never commit.
    abandoned: threading.Event = field(default_factory=threading.Event)

    def add(self, topic: Topic, partition: int, offset: int, row: bytes | None) -> None:
        if not self.offsets:
            self.started = time.monotonic()
        if row is not None:
            self.rows.setdefault(topic, []).append(row)
            self.count += 1
            self.mixed.add(topic)
        self.first_offsets.setdefault((topic.value, partition), offset)
        self.offsets[(topic.value, partition)] = offset + 1

    def add_run(
        self,
        topic: Topic,
        partition: int,
        first: int,
        last: int,
        rows: list[bytes],
        table: Any = None,
    ) -> None:
        """Offsets ``first..last`` of one partition, all of them valid ``rows`` (and, if
        given, the same rows as one Arrow ``table``)."""
        if not self.offsets:
            self.started = time.monotonic()
        if table is None:
            self.mixed.add(topic)
        else:
            self.arrow.setdefault(topic, []).append(table)
        self.rows.setdefault(topic, []).extend(rows)
        self.count += len(rows)
        self.first_offsets.setdefault((topic.value, partition), first)
        self.offsets[(topic.value, partition)] = last + 1

    def dedup_token(self, topic: Topic) -> str:
        spans = sorted(
            f"{p}:{self.first_offsets[(t, p)]}-{o}"
            for (t, p), o in self.offsets.items()
            if t == topic
        )
        return f"{topic.value}/{','.join(spans)}"

    def arrow_tables(self, topic: Topic) -> list[Any] | None:
        """Every row of the topic as Arrow tables, or None (some row is JSON only)."""
        return None if topic in self.mixed else self.arrow.get(topic)
