"""A lean HTTP/1.1 keep-alive load generator (asyncio streams + uvloop).

Python HTTP clients (httpx, aiohttp) cost more CPU per request than the server under
test; on a 2-core box that would measure the client. This one sends pre-built
request bytes and parses only the status line and Content-Length.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def build_request(
    method: str, path: str, port: int, body: bytes = b"", headers: dict[str, str] | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: keep-alive"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method in {"POST", "PUT", "PATCH"}:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
            break
    if length:
        await reader.readexactly(length)
    return status


async def _connection(
    port: int,
    requests: list[bytes],
    result: LoadResult,
    counter: list[int],
    pace: float | None,
    start: float,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while True:
            index = counter[0]
            if index >= len(requests):
                return
            counter[0] += 1
            if pace:
                delay = start + index * pace - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            sent = time.perf_counter()
            writer.write(requests[index])
            status = await _read_response(reader)
            result.latencies.append(time.perf_counter() - sent)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            result.requests += 1
            if status >= 400:
                result.errors += 1
    finally:
        writer.close()


async def run_load(
    port: int, requests: list[bytes], connections: int, rate: float | None = None
) -> LoadResult:
    """Send every request over `connections` keep-alive connections; paced if `rate`."""
    result = LoadResult()
    counter = [0]
    start = time.perf_counter()
    pace = 1.0 / rate if rate else None
    await asyncio.gather(
        *(_connection(port, requests, result, counter, pace, start) for _ in range(connections))
    )
    result.seconds = time.perf_counter() - start
    return result
