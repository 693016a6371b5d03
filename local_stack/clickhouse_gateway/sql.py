"""Just enough SQL lexing to route a request the way clickhouse-server does.

The engine parses every statement itself; the gateway only needs to know, without running
anything, (1) where the data of ``INSERT ... FORMAT fmt`` / ``INSERT ... VALUES`` starts, so the
bytes after it can be streamed into chDB's insert path instead of being glued into a giant
query string, and (2) which output format a query asked for (for ``X-ClickHouse-Format`` and
``Content-Type``). Both must ignore keywords inside strings, quoted identifiers and comments.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import SYNTAX_ERROR, ClickHouseError

_TOKEN = re.compile(
    rb"""
    (?P<ws>[ \t\n\r\f\v]+)
  | (?P<line>(?:--|\#[ !])[^\n]*\n)
  | (?P<str>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*"|`(?:[^`\\]|\\.|``)*`)
  | (?P<word>[A-Za-z_\x80-\xff][A-Za-z0-9_$\x80-\xff]*)
  | (?P<num>[0-9][A-Za-z0-9_.]*)
  | (?P<open>[(\[{])
  | (?P<close>[)\]}])
  | (?P<block>/\*)
  | (?P<other>.)
    """,
    re.X | re.S,
)


class Incomplete(Exception):
    """The buffer ends inside a token: wait for more bytes (or give up at end of body)."""


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # word | str | num | open | close | other
    value: bytes
    start: int
    end: int
    depth: int


def _block_comment_end(buf: bytes, pos: int) -> int:
    """End of a (nestable, like ClickHouse's) /* */ comment starting at pos."""
    depth = 0
    i = pos
    while True:
        nxt_open = buf.find(b"/*", i)
        nxt_close = buf.find(b"*/", i)
        if nxt_close < 0:
            raise Incomplete
        if 0 <= nxt_open < nxt_close:
            depth += 1
            i = nxt_open + 2
            continue
        depth -= 1
        i = nxt_close + 2
        if depth == 0:
            return i


def tokens(buf: bytes, *, final: bool) -> Iterator[Token]:
    """Significant tokens; raises Incomplete if (not final) a token may continue past the end."""
    pos, depth, size = 0, 0, len(buf)
    while pos < size:
        if buf[pos] in b"'\"`" or buf.startswith((b"--", b"# ", b"#!"), pos):
            match = _TOKEN.match(buf, pos)
            if match is None or match.lastgroup not in ("str", "line"):
                if final and buf[pos] not in b"'\"`":  # comment running to the end of the text
                    return
                raise Incomplete
        else:
            match = _TOKEN.match(buf, pos)
            assert match is not None  # "other" matches any byte
        kind = match.lastgroup or "other"
        end = match.end()
        if kind == "block":
            end = _block_comment_end(buf, pos)
        if end >= size and not final and kind != "close":
            raise Incomplete
        if kind == "close":
            depth = max(0, depth - 1)
        if kind not in ("ws", "line", "block"):
            yield Token(kind, buf[pos:end], pos, end, depth)
        if kind == "open":
            depth += 1
        pos = end


def _is(token: Token, word: bytes) -> bool:
    return token.kind == "word" and token.value.upper() == word


@dataclass(frozen=True, slots=True)
class InsertSplit:
    """``statement`` (without FORMAT) is for chDB's send_insert; data begins at ``data_offset``."""

    statement: str
    fmt: str
    data_offset: int


NOT_INSERT = None


def split_insert(buf: bytes, *, final: bool, max_query_size: int) -> InsertSplit | None:
    """Locate the data of an INSERT with inline data; None if this is any other statement.

    Raises Incomplete when more bytes are needed to decide (only while not final).
    """
    try:
        return _split_insert(buf, final=final)
    except Incomplete:
        if not final and len(buf) > max_query_size:
            raise ClickHouseError(
                SYNTAX_ERROR,
                f"Syntax error: the INSERT statement is longer than max_query_size "
                f"({max_query_size} bytes) before its FORMAT clause",
            ) from None
        if final:
            return NOT_INSERT
        raise


def _split_insert(buf: bytes, *, final: bool) -> InsertSplit | None:
    stream = tokens(buf, final=final)
    first = next(stream, None)
    if first is None or not _is(first, b"INSERT"):
        return NOT_INSERT
    for tok in stream:
        if tok.depth or tok.kind != "word":
            continue
        upper = tok.value.upper()
        if upper in (b"SELECT", b"WITH"):
            return NOT_INSERT
        if upper == b"VALUES":
            statement = buf[: tok.start].decode("utf-8", "replace").rstrip()
            return InsertSplit(statement, "Values", tok.end)
        if upper == b"FORMAT":
            name = next(stream, None)
            if name is None or name.kind != "word":
                return NOT_INSERT
            return InsertSplit(
                buf[: tok.start].decode("utf-8", "replace").rstrip(),
                name.value.decode(),
                _data_start(buf, name.end, final=final),
            )
    return NOT_INSERT


def _data_start(buf: bytes, pos: int, *, final: bool) -> int:
    """ClickHouse: data starts after the first newline, or after all blanks if there is none."""
    size = len(buf)
    while pos < size and buf[pos] in b" \t\f":
        pos += 1
    if pos < size and buf[pos] == 0x0D:
        pos += 1
    if pos < size and buf[pos] == 0x0A:
        return pos + 1
    if pos >= size and not final:
        raise Incomplete
    return pos


def output_format(query: bytes) -> str | None:
    """Name in a trailing ``FORMAT name [SETTINGS ...]`` clause at top level, if any."""
    try:
        toks = [t for t in tokens(query, final=True) if t.depth == 0]
    except Incomplete:
        return None
    found = None
    for i, tok in enumerate(toks[:-1]):
        if not _is(tok, b"FORMAT") or toks[i + 1].kind != "word":
            continue
        rest = toks[i + 2 :]
        if not rest or _is(rest[0], b"SETTINGS") or rest[0].value == b";":
            found = toks[i + 1].value.decode()
    return found


def file_clause(query: bytes) -> str | None:
    """``INTO OUTFILE`` / ``FROM INFILE``: they touch the gateway's own disk, so refuse them."""
    try:
        toks = list(tokens(query, final=True))
    except Incomplete:
        return None
    for a, b in itertools.pairwise(toks):
        if _is(a, b"INTO") and _is(b, b"OUTFILE"):
            return "INTO OUTFILE"
        if _is(a, b"FROM") and _is(b, b"INFILE"):
            return "FROM INFILE"
    return None


# Table functions, table and database engines and dictionary sources that read or write
# files, URLs or other hosts: ClickHouse's SOURCES grants (FILE, URL, REMOTE, MONGO, REDIS,
# MYSQL, POSTGRES, SQLITE, ODBC, JDBC, HDFS, S3, HIVE, AZURE, KAFKA, NATS, RABBITMQ) spelled
# out for chDB 26 (``system.table_functions``, ``system.table_engines``), plus chDB's own
# ``python``/``arrowstream`` (objects of the gateway process) and dynamic ``disk(...)``.
# ``input`` stays allowed: it reads only the request's own INSERT data.
EXTERNAL_SOURCES = frozenset(
    {
        "file", "filecluster", "filesystem", "filelog", "url", "urlcluster", "http",
        "remote", "remotesecure", "cluster", "clusterallreplicas", "distributed",
        "clickhouse", "s3", "s3cluster", "s3queue", "gcs", "oss", "cos", "cosn",
        "hdfs", "hdfscluster", "hive", "azureblobstorage", "azureblobstoragecluster",
        "azurequeue", "mysql", "materializedmysql", "postgresql", "materializedpostgresql",
        "mongodb", "redis", "sqlite", "jdbc", "odbc", "cassandra", "executable",
        "executablepool", "executable_pool", "yamlregexptree", "kafka", "nats", "rabbitmq",
        "keepermap", "embeddedrocksdb", "bigquery", "ytsaurus", "arrowflight",
        "datalakecatalog", "backup", "replicated", "python", "arrowstream", "queryrunner",
        "eval", "disk",
    }
)  # fmt: skip
EXTERNAL_PREFIXES = ("deltalake", "hudi", "iceberg", "paimon")
# Whole statements that write or read backups on the gateway's disk or elsewhere.
EXTERNAL_STATEMENTS = frozenset({b"BACKUP", b"RESTORE"})


def _identifier(token: Token) -> str | None:
    """Lower-cased name of a bare, `back-quoted` or "double-quoted" identifier."""
    if token.kind == "word":
        return token.value.decode("utf-8", "replace").lower()
    if token.kind == "str" and token.value[:1] in (b"`", b'"'):
        return token.value[1:-1].decode("utf-8", "replace").lower()
    return None


def _external(name: str | None) -> bool:
    return name is not None and (name in EXTERNAL_SOURCES or name.startswith(EXTERNAL_PREFIXES))


def external_source(query: bytes) -> str | None:
    """What in ``query`` would reach files, URLs or other hosts, or None.

    Looks at function calls ``name(`` (table functions, scalar ``file()``, dictionary
    sources, ``disk()``), engines after ``ENGINE [=]`` (with or without arguments: ``Kafka
    SETTINGS ...``), a quoted path as a table (``FROM '/etc/passwd'``) and BACKUP/RESTORE.
    Strings and comments never match; a text that does not lex is left to the engine."""
    try:
        toks = list(tokens(query, final=True))
    except Incomplete:
        return None
    if toks and toks[0].kind == "word" and toks[0].value.upper() in EXTERNAL_STATEMENTS:
        return toks[0].value.decode().upper()
    for i, tok in enumerate(toks):
        following = toks[i + 1] if i + 1 < len(toks) else None
        if following is None:
            break
        name = _identifier(tok)
        if following.kind == "open" and following.value == b"(" and _external(name):
            return name
        if _is(tok, b"ENGINE"):
            engine = toks[i + 2] if following.value == b"=" and i + 2 < len(toks) else following
            if _external(_identifier(engine)):
                return _identifier(engine)
        if (_is(tok, b"FROM") or _is(tok, b"JOIN")) and following.value[:1] == b"'":
            return "a file path as a table"
    return None


def first_keyword(query: bytes) -> str:
    try:
        for tok in tokens(query, final=True):
            return tok.value.decode("utf-8", "replace").upper() if tok.kind == "word" else ""
    except Incomplete:
        pass
    return ""


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def quote_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def is_identifier(name: str) -> bool:
    return bool(_IDENT.match(name))
