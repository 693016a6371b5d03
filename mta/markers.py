"""Fire-and-forget ordered writes to Redis for the in-doubt delivery marker.

The marker says "the final dot of this message is in the kernel, on its way to the MX".
It is written in the same event-loop step that wrote the dot (no yield in between, so
no crash window where a dot was sent but never marked, beyond two syscalls), as a RESP
command on a dedicated connection; the kernel delivers both buffers even if the
process is killed right after. Replies are read by a
background task (errors are logged), never awaited by the delivery path.

On a Redis Cluster there is one such connection per master, and each marker goes to
the master of its key's slot (the sync cluster client's slot map, no I/O); a key whose
master has no connection (the map changed) is written through the sync client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
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
    def __init__(self, redis_url: str, fallback: Any, cluster: bool = False) -> None:
        url = urlparse(redis_url)
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or 6379
        self.db = int((url.path or "/0").lstrip("/") or 0)
        self.password = url.password
        self.cluster = cluster
        self.fallback = fallback  # sync redis client used when the stream is down
        self._writers: dict[tuple[str, int], asyncio.StreamWriter] = {}
        self._reader_tasks: list[asyncio.Task[None]] = []

    async def connect(self) -> None:
        if not self.cluster:
            await self._open(self.host, self.port)
            return
        for node in self.fallback.get_primaries():
            await self._open(node.host, node.port)

    async def _open(self, host: str, port: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        if self.password:
            writer.write(resp_command("AUTH", self.password))
        if not self.cluster:  # a cluster has database 0 only
            writer.write(resp_command("SELECT", str(self.db)))
        self._writers[(host, port)] = writer
        self._reader_tasks.append(asyncio.create_task(self._drain(reader, (host, port))))

    async def _drain(self, reader: asyncio.StreamReader, node: tuple[str, int]) -> None:
        try:
            while line := await reader.readline():
                if line.startswith(b"-"):
                    log.error("in-doubt marker write failed: %r", line)
        except (ConnectionError, asyncio.CancelledError):
            pass
        self._writers.pop(node, None)

    def _writer_for(self, key: str) -> asyncio.StreamWriter | None:
        if not self.cluster:
            return self._writers.get((self.host, self.port))
        node = self.fallback.get_node_from_key(key)
        return self._writers.get((node.host, node.port)) if node is not None else None

    def prepare_hset(self, key: str, mapping: dict[str, bytes]) -> Callable[[], None]:
        """An HSET encoded and routed now, written by the returned call without yielding.

        The caller prepares before writing the final dot and calls right after it, so
        the two socket writes are separated by a method call and nothing else: the
        window where a kill would leave a sent dot unmarked is as short as it gets."""
        writer = self._writer_for(key)
        parts: list[bytes | str] = ["HSET", key]
        for field, value in mapping.items():
            parts += [field, value]
        command = resp_command(*parts)

        def write() -> None:
            if writer is None or writer.is_closing():
                self.fallback.hset(key, mapping=mapping)
            else:
                writer.write(command)

        return write

    def hset_now(self, key: str, mapping: dict[str, bytes]) -> None:
        """HSET without yielding: queued on the socket before this call returns."""
        self.prepare_hset(key, mapping)()

    async def close(self) -> None:
        for writer in list(self._writers.values()):
            writer.close()
        for task in self._reader_tasks:
            task.cancel()
