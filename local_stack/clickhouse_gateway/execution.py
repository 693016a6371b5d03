"""Runs one HTTP request against a chDB handle: decode the body, route, execute, summarise.

All methods are blocking and run on a worker thread (chDB releases the GIL), fed with wire
chunks by the async server. ``INSERT ... FORMAT fmt`` / ``VALUES`` data is streamed into
chDB's native insert path (``send_insert`` + ``insert_append``) as it arrives, so a large
insert never exists as one buffer or one SQL string; everything else is buffered (bounded)
and run as a query whose output bytes are returned without a copy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .compression import request_decoder
from .engine import Handle
from .errors import (
    ACCESS_DENIED,
    NOT_IMPLEMENTED,
    QUERY_IS_TOO_LARGE,
    READONLY,
    SYNTAX_ERROR,
    ClickHouseError,
    from_engine,
)
from .sql import (
    Incomplete,
    InsertSplit,
    external_source,
    file_clause,
    first_keyword,
    output_format,
    split_insert,
)

APPEND_BYTES = 4 << 20  # chDB parses appended data on its own pipeline; a few MiB per call is best


def refuse_external(query: bytes) -> None:
    """The gateway is the warehouse only: nothing that reads or writes files, URLs or other
    hosts (ClickHouse answers a user without the SOURCES grant the same way). Runs on every
    statement, streamed INSERTs included (``INSERT ... FROM INFILE ... FORMAT``)."""
    clause = file_clause(query)
    if clause:
        raise ClickHouseError(NOT_IMPLEMENTED, f"{clause} is not allowed over HTTP")
    found = external_source(query)
    if found is not None:
        raise ClickHouseError(
            ACCESS_DENIED,
            f"Not enough privileges: the chDB gateway refuses {found} (it reaches files, "
            "URLs or other hosts)",
        )


READONLY_HINT = (
    "Cannot execute query in readonly mode. For queries over HTTP, method GET implies "
    "readonly. You should use method POST for modifying queries"
)


@dataclass
class RequestContext:
    method: str = "POST"
    query_param: bytes = b""
    params: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    database: str | None = None
    default_format: str = "TabSeparated"
    readonly: int = 0
    content_encoding: str | None = None
    native_decompress: bool = False
    verify_checksum: bool = True
    max_query_size: int = 262_144
    max_buffer_bytes: int = 1 << 30
    in_session: bool = False


@dataclass
class Outcome:
    body: bytes | memoryview
    fmt: str | None
    summary: dict[str, str]
    # The chDB result that owns the memory ``body`` views; kept alive until the body is sent.
    owner: Any = None


def _summary(
    *,
    read_rows: int = 0,
    read_bytes: int = 0,
    written_rows: int = 0,
    written_bytes: int = 0,
    result_rows: int = 0,
    result_bytes: int = 0,
    elapsed: float = 0.0,
) -> dict[str, str]:
    return {
        "read_rows": str(read_rows),
        "read_bytes": str(read_bytes),
        "written_rows": str(written_rows),
        "written_bytes": str(written_bytes),
        "total_rows_to_read": str(read_rows),
        "result_rows": str(result_rows),
        "result_bytes": str(result_bytes),
        "elapsed_ns": str(int(elapsed * 1e9)),
    }


class Execution:
    def __init__(self, handle: Handle, ctx: RequestContext, *, database: str | None) -> None:
        self._handle = handle
        self._ctx = ctx
        self._database = database
        self._decoder = request_decoder(
            ctx.content_encoding, native=ctx.native_decompress, verify=ctx.verify_checksum
        )
        self._buf = bytearray(ctx.query_param + b"\n" if ctx.query_param else b"")
        self._state = "scan"  # scan -> insert | buffer
        self._inserter: Any = None
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._prepared = False
        self._started = time.perf_counter()
        self.discard_handle = False

    # -- feeding -----------------------------------------------------------------------

    def feed(self, raw: bytes) -> None:
        try:
            self._consume(self._decoder.feed(raw), final=False)
        except BaseException:
            self.abort()
            raise

    def finish(self) -> Outcome:
        try:
            self._consume(self._decoder.finish(), final=True)
            if self._state == "insert":
                return self._finish_insert()
            return self._run_query(bytes(self._buf))
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Cancel an open insert (client went away, body too large, bad data)."""
        inserter, self._inserter = self._inserter, None
        if inserter is not None:
            try:
                self._handle.conn.insert_cancel(inserter)
            except Exception:
                self.discard_handle = True

    def _consume(self, data: bytes, *, final: bool) -> None:
        if self._state == "insert":
            if data:
                self._queue(data)
            return
        self._buf += data
        if len(self._buf) > self._ctx.max_buffer_bytes:
            raise ClickHouseError(
                QUERY_IS_TOO_LARGE,
                f"Query is too large ({len(self._buf)} bytes decoded); "
                f"the gateway buffers at most {self._ctx.max_buffer_bytes} bytes for a query",
            )
        if self._state != "scan":
            return
        try:
            split = split_insert(
                bytes(self._buf), final=final, max_query_size=self._ctx.max_query_size
            )
        except Incomplete:
            return
        if split is None:
            self._state = "buffer"
            return
        self._start_insert(split)

    # -- inserts -----------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self._ctx.method == "GET":
            raise ClickHouseError(READONLY, READONLY_HINT)
        if self._ctx.readonly:
            raise ClickHouseError(READONLY, "Cannot execute query in readonly mode")

    def _prepare(self) -> None:
        if not self._prepared:
            try:
                self._handle.prepare(self._database, self._ctx.settings)
            finally:
                self.discard_handle = self.discard_handle or self._handle.broken
            self._prepared = True

    def _start_insert(self, split: InsertSplit) -> None:
        self._check_writable()
        refuse_external(split.statement.encode())
        if self._ctx.params and "{" in split.statement:
            raise ClickHouseError(
                NOT_IMPLEMENTED,
                "Query parameters in INSERT statements with inline data are not supported "
                "by the chDB gateway; bind them into the statement",
            )
        self._prepare()
        try:
            self._inserter = self._handle.conn.send_insert(split.statement, split.fmt)
        except RuntimeError as exc:
            raise from_engine(exc) from exc
        self._state = "insert"
        rest = bytes(self._buf[split.data_offset :])
        self._buf = bytearray()
        if rest:
            self._queue(rest)

    def _queue(self, data: bytes) -> None:
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes >= APPEND_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending, self._pending_bytes = [], 0
        try:
            self._handle.conn.insert_append(self._inserter, data)
        except RuntimeError as exc:
            raise from_engine(exc) from exc

    def _finish_insert(self) -> Outcome:
        self._flush()
        inserter, self._inserter = self._inserter, None
        try:
            result = self._handle.conn.insert_done(inserter)
        except RuntimeError as exc:
            raise from_engine(exc) from exc
        rows, size = result.rows_written(), result.bytes_written()
        return Outcome(
            b"",
            None,
            _summary(
                read_rows=rows,
                read_bytes=size,
                written_rows=rows,
                written_bytes=size,
                elapsed=time.perf_counter() - self._started,
            ),
        )

    # -- queries -----------------------------------------------------------------------

    def _run_query(self, text: bytes) -> Outcome:
        if not text.strip():
            raise ClickHouseError(SYNTAX_ERROR, "Empty query")
        refuse_external(text)
        sql: str | bytes
        query_class = "UNKNOWN"
        try:
            sql = text.decode()
        except UnicodeDecodeError:
            sql = text  # binary-bound literals: the engine parses bytes, we cannot classify
        else:
            info = self._handle.classify(sql)
            query_class = info["query_class"].name
            if info["statement_count"] > 1:
                raise ClickHouseError(SYNTAX_ERROR, "Multi-statements are not allowed")
        self._check_readonly(query_class, text)
        self._prepare()
        result = self._handle.query(sql, self._ctx.default_format, self._ctx.params)
        if query_class in ("CONTROL", "UNKNOWN"):
            # USE / SET / CREATE TEMPORARY TABLE change the handle's session state: keep it
            # for the HTTP session that asked, never leak it to other anonymous requests.
            if self._ctx.in_session:
                self._handle.forget_state()
            else:
                self.discard_handle = True
        view = result.get_memview().view()
        fmt = None
        if query_class == "READ_ONLY" or len(view):
            fmt = output_format(text) or self._ctx.default_format
        summary = _summary(
            read_rows=result.storage_rows_read(),
            read_bytes=result.storage_bytes_read(),
            written_rows=result.rows_written(),
            written_bytes=result.bytes_written(),
            result_rows=result.rows_read(),
            result_bytes=result.bytes_read(),
            elapsed=time.perf_counter() - self._started,
        )
        return Outcome(view, fmt, summary, owner=result)

    def _check_readonly(self, query_class: str, text: bytes) -> None:
        readonly = 2 if self._ctx.method == "GET" else self._ctx.readonly
        if not readonly or query_class == "READ_ONLY":
            return
        keyword = first_keyword(text)
        if keyword == "USE" or (readonly == 2 and keyword == "SET"):
            return
        if query_class == "UNKNOWN" and keyword in (
            "SELECT",
            "WITH",
            "SHOW",
            "DESCRIBE",
            "DESC",
            "EXISTS",
            "EXPLAIN",
        ):
            return  # does not parse: let the engine report the syntax error
        raise ClickHouseError(
            READONLY,
            READONLY_HINT if self._ctx.method == "GET" else "Cannot execute query in readonly mode",
        )
