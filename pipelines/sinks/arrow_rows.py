"""Sink rows as Arrow columns: ClickHouse reads ``ArrowStream`` for a fraction of what
parsing ``JSONEachRow`` costs it (measured in the chDB gateway: ~6 instead of ~15 CPU-µs
per ``raw_message_events`` row), and pyarrow's C++ JSON reader checks a whole fetch
column-wise instead of the sink parsing every row in Python.

Only *plain* fetches take this path: every row a JSON object with every column the
table shares with the event model, none null, each of the column's exact type and range
(from the table's own ClickHouse types), envelopes valid (supported version, required
fields non-empty) and datetimes in the UTC form ``serialize`` writes. Anything else
returns None and the fetch takes the JSONEachRow path with its per-row checks, so what is
accepted, dead-lettered or refused does not change (a test inserts the same rows both
ways and compares them).
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
from pydantic import BaseModel

from kibamail.contracts import SUPPORTED_VERSIONS
from pipelines.sinks.rows import REQUIRED_FIELDS

INTEGERS: dict[str, pa.DataType] = {
    "UInt8": pa.uint8(),
    "UInt16": pa.uint16(),
    "UInt32": pa.uint32(),
    "UInt64": pa.uint64(),
    "Int8": pa.int8(),
    "Int16": pa.int16(),
    "Int32": pa.int32(),
    "Int64": pa.int64(),
}
STRINGS = re.compile(r"(?:LowCardinality\()?String\)?")
STRING_ARRAYS = re.compile(r"Array\((?:LowCardinality\()?String\)?\)")
UTC_DATETIME = re.compile(r"DateTime64\([0-6], 'UTC'\)")
# What orjson (OPT_UTC_Z) writes for a UTC datetime, in years both pyarrow and
# ClickHouse's DateTime64 hold; the cast to a timestamp then refuses impossible dates.
CANONICAL_UTC = (
    r"^(?:19|2[0-2])\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
    r"T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{6})?Z$"
)
UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")
ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)


def arrow_type(clickhouse_type: str) -> pa.DataType | None:
    """The Arrow type a JSON value must parse as for this column (datetimes: string)."""
    if STRINGS.fullmatch(clickhouse_type) or UTC_DATETIME.fullmatch(clickhouse_type):
        return pa.string()
    if STRING_ARRAYS.fullmatch(clickhouse_type):
        return pa.list_(pa.string())
    return INTEGERS.get(clickhouse_type)


@dataclass(frozen=True)
class ArrowShape:
    """How a fetch of one topic becomes Arrow columns for its table."""

    schema: pa.Schema
    datetimes: tuple[str, ...]
    required: tuple[str, ...]

    @classmethod
    def of(cls, model: type[BaseModel], columns: dict[str, str]) -> ArrowShape | None:
        """From the table's ``{name: ClickHouse type}``; None if a shared column has a type
        without a rule here (that table keeps the JSONEachRow path)."""
        fields, datetimes = [], []
        for name in model.model_fields:
            if name not in columns:
                continue
            kind = arrow_type(columns[name])
            if kind is None:
                return None
            fields.append(pa.field(name, kind, nullable=True))
            if UTC_DATETIME.fullmatch(columns[name]):
                datetimes.append(name)
        names = {field.name for field in fields}
        required = tuple(name for name in REQUIRED_FIELDS[model] if name in names)
        if "event_version" not in names or not set(REQUIRED_FIELDS[model]) <= names:
            return None
        return cls(pa.schema(fields), tuple(datetimes), required)

    def parse(self, values: Sequence[bytes | None]) -> pa.Table | None:
        """The fetch as one Arrow table if every row is plain (see the module doc), else None."""
        if not values or None in values or min(map(len, values)) == 0:  # type: ignore[arg-type]
            return None
        body = b"\n".join(values)  # type: ignore[arg-type]
        if body.count(b"\n") != len(values) - 1:  # a value spanning lines: not plain
            return None
        try:
            table = pa_json.read_json(
                io.BytesIO(body),
                read_options=pa_json.ReadOptions(use_threads=False, block_size=len(body) + 1),
                parse_options=pa_json.ParseOptions(
                    explicit_schema=self.schema, unexpected_field_behavior="ignore"
                ),
            )
            if table.num_rows != len(values) or any(c.null_count for c in table.columns):
                return None
            if not self._envelopes_valid(table):
                return None
            for name in self.datetimes:
                column = table[name]
                if not pc.all(pc.match_substring_regex(column, CANONICAL_UTC)).as_py():
                    return None
                index = table.schema.get_field_index(name)
                table = table.set_column(index, name, pc.cast(column, UTC_TIMESTAMP))
        except ARROW_ERRORS:
            return None
        return table

    def _envelopes_valid(self, table: pa.Table) -> bool:
        # pc.unique, not pc.is_in: a value set built with pa.array imports pandas (seconds).
        if not SUPPORTED_VERSIONS.issuperset(pc.unique(table["event_version"]).to_pylist()):
            return False
        for name in self.required:
            column = table[name]
            if pa.types.is_string(column.type) and pc.min(pc.utf8_length(column)).as_py() == 0:
                return False
        return True


def arrow_stream(tables: list[pa.Table]) -> bytes:
    """One ArrowStream body (what ``INSERT ... FORMAT ArrowStream`` reads)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, tables[0].schema) as writer:
        for table in tables:
            writer.write_table(table)
    return bytes(sink.getvalue())


def describe(client: Any, database: str, table: str) -> dict[str, str]:
    """``{column: type}`` of a table, from ClickHouse itself."""
    result = client.query(
        "SELECT name, type FROM system.columns WHERE database = {d:String} AND table = {t:String}",
        parameters={"d": database, "t": table},
    )
    return {str(name): str(kind) for name, kind in result.result_rows}
