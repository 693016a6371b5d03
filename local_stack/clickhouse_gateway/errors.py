"""ClickHouse-compatible errors: codes, the HTTP status mapping and the text body clients parse.

Clients (clickhouse-connect, dbt-clickhouse, JDBC, Grafana) read the numeric code from the
``X-ClickHouse-Exception-Code`` header and the ``Code: N. DB::Exception: ... (NAME)`` body, so
the gateway answers exactly like clickhouse-server does, including its status mapping
(``src/Server/HTTP/exceptionCodeToHTTPStatus.cpp``).
"""

from __future__ import annotations

import re

# Error codes the gateway raises itself (values are ClickHouse's, stable across versions).
BAD_ARGUMENTS = 36
CHECKSUM_DOESNT_MATCH = 40
TOO_LARGE_SIZE_COMPRESSED = 39
NOT_IMPLEMENTED = 48
LOGICAL_ERROR = 49
SYNTAX_ERROR = 62
UNKNOWN_FORMAT = 73
UNKNOWN_COMPRESSION_METHOD = 89
UNKNOWN_SETTING = 115
READONLY = 164
CANNOT_DECOMPRESS = 271
QUERY_IS_TOO_LARGE = 229
SESSION_NOT_FOUND = 372
SESSION_IS_LOCKED = 373
HTTP_LENGTH_REQUIRED = 381
ACCESS_DENIED = 497
AUTHENTICATION_FAILED = 516
UNKNOWN_EXCEPTION = 1002

_NAMES = {
    BAD_ARGUMENTS: "BAD_ARGUMENTS",
    CHECKSUM_DOESNT_MATCH: "CHECKSUM_DOESNT_MATCH",
    TOO_LARGE_SIZE_COMPRESSED: "TOO_LARGE_SIZE_COMPRESSED",
    NOT_IMPLEMENTED: "NOT_IMPLEMENTED",
    LOGICAL_ERROR: "LOGICAL_ERROR",
    SYNTAX_ERROR: "SYNTAX_ERROR",
    UNKNOWN_FORMAT: "UNKNOWN_FORMAT",
    UNKNOWN_COMPRESSION_METHOD: "UNKNOWN_COMPRESSION_METHOD",
    UNKNOWN_SETTING: "UNKNOWN_SETTING",
    READONLY: "READONLY",
    CANNOT_DECOMPRESS: "CANNOT_DECOMPRESS",
    QUERY_IS_TOO_LARGE: "QUERY_IS_TOO_LARGE",
    SESSION_NOT_FOUND: "SESSION_NOT_FOUND",
    SESSION_IS_LOCKED: "SESSION_IS_LOCKED",
    HTTP_LENGTH_REQUIRED: "HTTP_LENGTH_REQUIRED",
    ACCESS_DENIED: "ACCESS_DENIED",
    AUTHENTICATION_FAILED: "AUTHENTICATION_FAILED",
    UNKNOWN_EXCEPTION: "UNKNOWN_EXCEPTION",
}

# exceptionCodeToHTTPStatus.cpp, by numeric code.
_STATUS_401 = frozenset({194})  # REQUIRED_PASSWORD
_STATUS_403 = frozenset({192, 193, 516, 512, 497})  # users, passwords, roles, ACCESS_DENIED
_STATUS_400 = frozenset(
    {
        36,
        427,
        6,
        25,
        26,
        38,
        41,
        72,
        441,
        675,
        676,
        27,
        376,
        15,
        44,
        37,
        123,
        8,
        167,
        168,
        223,
        62,
        117,
        53,
        321,
    }
)
_STATUS_404 = frozenset({60, 46, 47, 50, 56, 81, 115, 152, 63, 73, 336, 78, 511})
_STATUS_OTHER = {
    229: 413,  # QUERY_IS_TOO_LARGE
    48: 501,  # NOT_IMPLEMENTED
    209: 503,  # SOCKET_TIMEOUT
    76: 503,  # CANNOT_OPEN_FILE
    381: 411,  # HTTP_LENGTH_REQUIRED
    159: 408,  # TIMEOUT_EXCEEDED
    439: 503,  # CANNOT_SCHEDULE_TASK
    779: 415,  # UNSUPPORTED_MEDIA_TYPE
}

_CODE_RE = re.compile(r"Code: (\d+)\.")
_VERSION_RE = re.compile(r"\(version [^)]*\)\s*$")


def http_status(code: int) -> int:
    """The HTTP status clickhouse-server answers for an exception code."""
    if code in _STATUS_400:
        return 400
    if code in _STATUS_404:
        return 404
    if code in _STATUS_403:
        return 403
    if code in _STATUS_401:
        return 401
    return _STATUS_OTHER.get(code, 500)


class ClickHouseError(Exception):
    """An error to answer in ClickHouse's format; ``text`` is the full ``Code: ...`` line."""

    def __init__(self, code: int, message: str, *, text: str | None = None) -> None:
        self.code = code
        self.message = message
        name = _NAMES.get(code, "UNKNOWN_EXCEPTION")
        self.text = text or f"Code: {code}. DB::Exception: {message}. ({name})"
        super().__init__(self.text)

    @property
    def status(self) -> int:
        return http_status(self.code)

    def body(self, version: str) -> bytes:
        """Response body, with the ``(version ...)`` trailer real servers append."""
        text = self.text.rstrip()
        if not _VERSION_RE.search(text):
            text = f"{text} (version {version})"
        return (text + "\n").encode()


def from_engine(exc: BaseException) -> ClickHouseError:
    """Wrap a chDB exception; its message already is ClickHouse's ``Code: N. DB::Exception``."""
    raw = str(exc)
    start = raw.find("Code: ")
    text = raw[start:].strip() if start >= 0 else raw.strip()
    match = _CODE_RE.match(text)
    if match is None:
        return ClickHouseError(UNKNOWN_EXCEPTION, text or type(exc).__name__)
    return ClickHouseError(int(match.group(1)), text, text=text)
