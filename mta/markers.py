"""Fire-and-forget ordered writes to Redis for the in-doubt delivery marker.

The marker says "the final dot of this message is in the kernel, on its way to the MX".
It is written in the same event-loop step that wrote the dot (no yield in between, so
no crash window where a dot was sent but never marked, beyond two syscalls), as a RESP
command on a dedicated connection; the kernel delivers both buffers even if the
process is killed right after. Replies are read by a
background task (errors are logged), never awaited by the delivery path.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlparse

log = logging.getLogger(__name__)


def resp_command(*parts: bytes | str) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class MarkerWriter:
    def __init__(self, redis_url: str, fallback: Any) -> None:
        url = urlparse(redis_url)
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or 6379
        self.db = int((url.path or "/0").lstrip("/") or 0)
        self.password = url.password
        self.fallback = fallback  # sync redis client used when the stream is down
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        if self.password:
            writer.write(resp_command("AUTH", self.password))
        writer.write(resp_command("SELECT", str(self.db)))
        self._writer = writer
        self._reader_task = asyncio.create_task(self._drain(reader))

    async def _drain(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                if line.startswith(b"-"):
                    log.error("in-doubt marker write failed: %r", line)
        except (ConnectionError, asyncio.CancelledError):
            pass
        self._writer = None

    def hset_now(self, key: str, mapping: dict[str, bytes]) -> None:
        """HSET without yielding: queued on the socket before this call returns."""
        if self._writer is None or self._writer.is_closing():
            self.fallback.hset(key, mapping=mapping)
            return
        parts: list[bytes | str] = ["HSET", key]
        for field, value in mapping.items():
            parts += [field, value]
        self._writer.write(resp_command(*parts))

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
