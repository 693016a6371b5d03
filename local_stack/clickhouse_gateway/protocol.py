"""ClickHouse HTTP request conventions: URL parameters, settings, auth, forms, content types.

Mirrors clickhouse-server's HTTPHandler: a fixed set of transport parameters, ``param_<name>``
query parameters, and every other URL parameter is a setting for the query.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qsl

from .errors import AUTHENTICATION_FAILED, BAD_ARGUMENTS, NOT_IMPLEMENTED, ClickHouseError

# HTTPHandler's reserved names: never settings.
TRANSPORT_PARAMS = frozenset(
    {
        "query",
        "compress",
        "decompress",
        "user",
        "password",
        "quota_key",
        "query_id",
        "stacktrace",
        "role",
        "buffer_size",
        "wait_end_of_query",
        "session_id",
        "session_timeout",
        "session_check",
        "client_protocol_version",
        "close_session",
        "database",
        "default_format",
    }
)
# Real settings that only steer the HTTP layer; the gateway acts on them itself.
HTTP_SETTINGS = frozenset(
    {
        "enable_http_compression",
        "http_zlib_compression_level",
        "http_native_compression_disable_checksumming_on_decompress",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "cancel_http_readonly_queries_on_client_close",
        "http_wait_end_of_query",
        "http_response_buffer_size",
        "add_http_cors_header",
        "readonly",
        "http_write_exception_in_output_format",
    }
)


def parse_query_string(raw: bytes) -> dict[str, str]:
    """Last value wins, like Poco's HTMLForm lookup for repeated names."""
    return dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True, encoding="utf-8"))


def split_params(params: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(query parameters without the ``param_`` prefix, engine settings)."""
    binds: dict[str, str] = {}
    settings: dict[str, str] = {}
    for name, value in params.items():
        if name.startswith("param_"):
            binds[name[6:]] = value
        elif name not in TRANSPORT_PARAMS and name not in HTTP_SETTINGS:
            settings[name] = value
    return binds, settings


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def int_setting(params: dict[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ClickHouseError(
            BAD_ARGUMENTS, f"Cannot parse value '{raw}' of setting {name} as integer"
        ) from None


def credentials(headers: dict[str, str], params: dict[str, str]) -> tuple[str, str]:
    """User and password the way clickhouse-server looks them up."""
    if "x-clickhouse-user" in headers or "x-clickhouse-key" in headers:
        return headers.get("x-clickhouse-user", "default"), headers.get("x-clickhouse-key", "")
    auth = headers.get("authorization", "")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "basic":
            raise ClickHouseError(
                AUTHENTICATION_FAILED,
                f"Authentication scheme {scheme!r} is not supported by the chDB gateway "
                "(use Basic, X-ClickHouse-User/Key or user/password parameters)",
            )
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ClickHouseError(BAD_ARGUMENTS, "Invalid Basic authorization header") from None
        user, _, password = decoded.partition(":")
        return user or "default", password
    return params.get("user", "default") or "default", params.get("password", "")


def authenticate(user: str, password: str, expected_user: str, expected_password: str) -> None:
    user_ok = hmac.compare_digest(user.encode(), expected_user.encode())
    password_ok = hmac.compare_digest(password.encode(), expected_password.encode())
    if not (user_ok and password_ok):
        raise ClickHouseError(
            AUTHENTICATION_FAILED,
            f"{user}: Authentication failed: password is incorrect, "
            "or there is no user with such name",
        )


def parse_form(content_type: str, body: bytes) -> dict[str, str]:
    """Fields of a multipart/form-data body (``query`` and ``param_*``), as clickhouse-connect
    sends them for long parameters. Like clickhouse-server, urlencoded bodies are query text."""
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise ClickHouseError(BAD_ARGUMENTS, "Malformed multipart/form-data body")
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        if part.get_param("filename", header="content-disposition") is not None:
            raise ClickHouseError(
                NOT_IMPLEMENTED,
                "External tables (file parts of multipart/form-data) are not supported by "
                "the chDB gateway",
            )
        payload = part.get_payload(decode=True)
        fields[name] = payload.decode("utf-8") if isinstance(payload, bytes) else str(payload)
    return fields


_CONTENT_TYPES = (
    ("TabSeparated", "text/tab-separated-values; charset=UTF-8"),
    ("TSV", "text/tab-separated-values; charset=UTF-8"),
    ("CSVWithNames", "text/csv; charset=UTF-8; header=present"),
    ("CSV", "text/csv; charset=UTF-8; header=absent"),
    ("JSONEachRow", "application/x-ndjson; charset=UTF-8"),
    ("JSONLines", "application/x-ndjson; charset=UTF-8"),
    ("NDJSON", "application/x-ndjson; charset=UTF-8"),
    ("JSONCompactEachRow", "application/x-ndjson; charset=UTF-8"),
    ("JSON", "application/json; charset=UTF-8"),
    ("XML", "application/xml; charset=UTF-8"),
)
_BINARY_FORMATS = (
    "Native",
    "RowBinary",
    "Arrow",
    "Parquet",
    "ORC",
    "Avro",
    "MsgPack",
    "Protobuf",
    "CapnProto",
    "BSONEachRow",
    "Npy",
)


def content_type(fmt: str | None) -> str:
    if not fmt:
        return "text/plain; charset=UTF-8"
    for prefix in _BINARY_FORMATS:
        if fmt.startswith(prefix):
            return "application/octet-stream"
    for prefix, value in _CONTENT_TYPES:
        if fmt.startswith(prefix):
            return value
    return "text/plain; charset=UTF-8"
