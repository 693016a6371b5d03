"""The sink's Arrow path takes only plain fetches: never a row the envelope check refuses,
nor one whose columns ClickHouse would read differently from its JSON."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pyarrow as pa
import pytest

from kibamail.contracts import CorrelatedMessageEvent, MessageStatus, serialize
from pipelines.sinks.arrow_rows import ArrowShape, arrow_stream
from pipelines.sinks.rows import envelope_error

pytestmark = pytest.mark.unit

# raw_message_events as ClickHouse describes it (kibamail/clickhouse_schema 0001).
COLUMNS = {
    "event_id": "String",
    "event_version": "UInt8",
    "team_id": "LowCardinality(String)",
    "occurred_at": "DateTime64(3, 'UTC')",
    "message_id": "String",
    "status": "LowCardinality(String)",
    "recipient": "String",
    "recipient_domain": "LowCardinality(String)",
    "sender_domain": "LowCardinality(String)",
    "kind": "LowCardinality(String)",
    "pool": "LowCardinality(String)",
    "source_ip": "LowCardinality(String)",
    "mx_host": "LowCardinality(String)",
    "attempt": "UInt16",
    "smtp_code": "UInt16",
    "enhanced_code": "LowCardinality(String)",
    "smtp_response": "String",
    "bounce_class": "LowCardinality(String)",
    "reason": "String",
    "transcript": "String",
    "broadcast_id": "String",
    "contact_id": "String",
    "variant_id": "LowCardinality(String)",
    "tags": "Array(LowCardinality(String))",
    "ingested_at": "DateTime64(3, 'UTC')",
}
SHAPE = ArrowShape.of(CorrelatedMessageEvent, COLUMNS)
GOOD = serialize(
    CorrelatedMessageEvent(
        team_id="t",
        message_id="m",
        status=MessageStatus.DELIVERED,
        occurred_at=datetime(2026, 11, 1, 12, 0, 0, 999999, tzinfo=UTC),
        smtp_response='250 "ok" é\u2028\t',
        tags=["a", "b"],
    )
)


def with_fields(**changes: object) -> bytes:
    data = orjson.loads(GOOD)
    data.update(changes)
    return orjson.dumps({k: v for k, v in data.items() if v is not ...})


def test_shape_covers_every_shared_column() -> None:
    assert SHAPE is not None
    assert SHAPE.schema.names == [n for n in CorrelatedMessageEvent.model_fields if n in COLUMNS]
    assert SHAPE.datetimes == ("occurred_at",)
    assert SHAPE.schema.field("attempt").type == pa.uint16()


def test_a_type_without_a_rule_means_json_only() -> None:
    assert ArrowShape.of(CorrelatedMessageEvent, {**COLUMNS, "smtp_code": "Float64"}) is None


def test_plain_fetch_becomes_one_table_with_utc_timestamps() -> None:
    assert SHAPE is not None
    table = SHAPE.parse([GOOD, with_fields(extra="ignored"), GOOD])
    assert table is not None and table.num_rows == 3
    assert "extra" not in table.schema.names
    first = table.slice(0, 1).to_pylist()[0]
    assert first["occurred_at"] == datetime(2026, 11, 1, 12, 0, 0, 999999, tzinfo=UTC)
    assert first["smtp_response"] == '250 "ok" é\u2028\t'
    assert first["tags"] == ["a", "b"]
    assert arrow_stream([table, table])[:4] == b"\xff\xff\xff\xff"  # IPC stream framing


@pytest.mark.parametrize(
    "value",
    [
        b"{oops",
        b"[1]",
        b"1",
        b"",
        b'"text"',
        with_fields(event_version=3),
        with_fields(event_id=""),
        with_fields(event_id=...),
        with_fields(occurred_at=None),
        with_fields(team_id=...),
        with_fields(message_id=""),
        with_fields(status=...),
        with_fields(pool=...),  # a default ClickHouse fills in: JSON path
        with_fields(pool=None),
        with_fields(smtp_code="250"),
        with_fields(smtp_code=70000),  # out of UInt16
        with_fields(attempt=-1),
        with_fields(reason=5),
        with_fields(tags="a"),
        with_fields(occurred_at="2026-11-01 12:00:00"),
        with_fields(occurred_at="2026-11-01T12:00:00+02:00"),
        with_fields(occurred_at="2026-02-30T12:00:00Z"),
        with_fields(occurred_at="2026-11-01T12:00:00.1234567Z"),
        with_fields(occurred_at="0001-01-01T00:00:00Z"),
        orjson.dumps(orjson.loads(GOOD), option=orjson.OPT_INDENT_2),  # spans lines
        GOOD + b"\n" + GOOD,  # two rows in one message
    ],
)
def test_anything_not_plain_takes_the_json_path(value: bytes) -> None:
    assert SHAPE is not None
    assert SHAPE.parse([GOOD, value, GOOD]) is None
    assert SHAPE.parse([value]) is None


def test_plain_variants_pass_both_checks() -> None:
    assert SHAPE is not None
    for value in (GOOD, with_fields(extra="fine"), with_fields(attempt=65535, smtp_code=0)):
        assert envelope_error(CorrelatedMessageEvent, value) is None
        assert SHAPE.parse([value]) is not None


def test_empty_and_missing_values_are_not_plain() -> None:
    assert SHAPE is not None
    assert SHAPE.parse([]) is None
    assert SHAPE.parse([GOOD, None]) is None
    assert SHAPE.parse([GOOD + b"\n", b""]) is None
