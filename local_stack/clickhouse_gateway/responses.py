"""ASGI responses in clickhouse-server's shape: result bodies with the X-ClickHouse-* headers
clients read, optional HTTP/ClickHouse compression, and ``Code: N. DB::Exception`` errors."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from .compression import compress_native_blocks, response_encoder
from .errors import ClickHouseError
from .execution import Outcome
from .protocol import content_type

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

SEND_BYTES = 4 << 20  # response slice per ASGI send
INLINE_COMPRESS_BYTES = 64 << 10  # compress smaller bodies on the event loop, larger on a worker


def encode_body(body: bytes | memoryview, native: bool, encoding: str | None, level: int) -> bytes:
    """ClickHouse block framing (``compress=1``) first, then the HTTP Content-Encoding."""
    data: bytes | memoryview = compress_native_blocks(body) if native else body
    if encoding:
        encoder = response_encoder(encoding, level)
        data = encoder.compress(data) + encoder.flush()
    return bytes(data)


async def send_outcome(
    send: Send,
    outcome: Outcome,
    base: Headers,
    *,
    encoding: str | None,
    native: bool,
    level: int,
    head: bool,
    keep_alive: int,
    run: Callable[..., Awaitable[Any]],
) -> None:
    body: bytes | memoryview = outcome.body
    headers = [
        *base,
        (b"x-clickhouse-summary", json.dumps(outcome.summary, separators=(",", ":")).encode()),
        (b"content-type", content_type(outcome.fmt).encode()),
    ]
    if outcome.fmt:
        headers.append((b"x-clickhouse-format", outcome.fmt.encode()))
    if (encoding or native) and len(body):
        if len(body) <= INLINE_COMPRESS_BYTES:
            body = encode_body(body, native, encoding, level)
        else:
            body = await run(encode_body, body, native, encoding, level)
    if encoding:
        headers.append((b"content-encoding", encoding.encode()))
    headers.append((b"content-length", str(len(body)).encode()))
    headers.append((b"keep-alive", f"timeout={keep_alive}".encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    view = memoryview(body)
    if head or not len(view):
        await send({"type": "http.response.body", "body": b""})
        return
    for start in range(0, len(view), SEND_BYTES):
        end = start + SEND_BYTES
        more = end < len(view)
        await send(
            {"type": "http.response.body", "body": bytes(view[start:end]), "more_body": more}
        )


async def send_error(
    send: Send, exc: ClickHouseError, base: Headers, *, version: str, close: bool
) -> None:
    payload = exc.body(version)
    headers = [
        *base,
        (b"x-clickhouse-exception-code", str(exc.code).encode()),
        (b"content-type", b"text/plain; charset=UTF-8"),
        (b"content-length", str(len(payload)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    with contextlib.suppress(Exception):  # the client may be gone already
        await send({"type": "http.response.start", "status": exc.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


async def send_plain(send: Send, status: int, body: bytes, head: bool = False) -> None:
    headers = [
        (b"content-type", b"text/html; charset=UTF-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})
