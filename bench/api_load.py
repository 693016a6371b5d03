"""A lean HTTP/1.1 keep-alive load generator (asyncio protocols + uvloop).

Python HTTP clients (httpx, aiohttp) cost more CPU per request than the server under
test; on a 2-core box that would measure the client. This one writes pre-built request
bytes from an `asyncio.Protocol` and parses only the status line and Content-Length
(no streams, no per-request tasks).

Two modes: closed loop (C connections, each sends its next request when the previous
answer arrived: throughput) and open loop (`rate`: request i is due at start + i/rate
whatever the server does; its latency counts from that due time, so a slow server
cannot hide queueing delay by slowing the generator down — no coordinated omission).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from typing import cast

TIMEOUT_STATUS = 0  # recorded for a request with no answer within the timeout
DROPPED_STATUS = 599  # the server closed the connection instead of answering


@dataclass
class LoadResult:
    requests: int = 0
    ok: int = 0  # 2xx answers: the only ones a rate counts
    errors: int = 0  # answered, but not 2xx (4xx, 5xx, dropped connections)
    timeouts: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    # Open loop only: each request's due time (seconds from the start), beside its latency.
    due: list[float] = field(default_factory=list)
    seconds: float = 0.0
    client_cpu_seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Successful (2xx) requests per second."""
        return self.ok / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, object]:
        return {
            "sent": self.requests,
            "ok_2xx": self.ok,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "ok_per_s": round(self.rate, 1),
            "p50_ms": round(self.percentile(0.5) * 1000, 2),
            "p99_ms": round(self.percentile(0.99) * 1000, 2),
            "p99_9_ms": round(self.percentile(0.999) * 1000, 2),
            "max_ms": round(max(self.latencies, default=0.0) * 1000, 2),
        }

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))]

    def percentile_due_after(self, p: float, seconds: float) -> float:
        """The percentile over requests due after `seconds` (steady state, past the ramp-up
        of freshly opened connections); 0.0 when not an open-loop run."""
        steady = sorted(
            lat for lat, due in zip(self.latencies, self.due, strict=True) if due >= seconds
        )
        return steady[min(len(steady) - 1, int(len(steady) * p))] if steady else 0.0

    def record(self, status: int, latency: float) -> None:
        self.latencies.append(latency)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.requests += 1
        if 200 <= status < 300:
            self.ok += 1
        elif status == TIMEOUT_STATUS:
            self.timeouts += 1
        else:
            self.errors += 1


def build_request(
    method: str, path: str, port: int, body: bytes = b"", headers: dict[str, str] | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: keep-alive"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method in {"POST", "PUT", "PATCH"}:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._waiter: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0 or self._waiter is None:
            return
        length = 0
        start = self._buffer.find(b"\r\ncontent-length:", 0, end)
        if start < 0:
            start = self._buffer.lower().find(b"\r\ncontent-length:", 0, end)
        if start >= 0:
            stop = self._buffer.find(b"\r\n", start + 2)
            length = int(self._buffer[start + 17 : stop])
        total = end + 4 + length
        if len(self._buffer) < total:
            return
        status = int(self._buffer[9:12])
        del self._buffer[:total]
        waiter, self._waiter = self._waiter, None
        waiter.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError("server closed the connection"))

    def request(self, data: bytes) -> asyncio.Future[int]:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        if self.transport.is_closing():
            self._waiter.set_exception(ConnectionError("connection closed"))
        else:
            self.transport.write(data)
        return self._waiter


async def _connect(port: int) -> _Connection:
    loop = asyncio.get_running_loop()
    _transport, protocol = await loop.create_connection(_Connection, "127.0.0.1", port)
    return protocol


async def _closed_loop(
    port: int,
    connection: _Connection,
    requests: list[bytes],
    counter: list[int],
    result: LoadResult,
    timeout: float,
) -> None:
    while counter[0] < len(requests):
        index = counter[0]
        counter[0] += 1
        sent = time.perf_counter()
        try:
            status = await asyncio.wait_for(connection.request(requests[index]), timeout)
        except ConnectionError:  # the server dropped us: count it, carry on on a new one
            status = DROPPED_STATUS
            connection = await _connect(port)
        except TimeoutError:  # no answer in time: counted, and a fresh connection
            status = TIMEOUT_STATUS
            if connection.transport is not None:
                connection.transport.abort()
            connection = await _connect(port)
        result.record(status, time.perf_counter() - sent)


class _OpenLoop:
    """Hands each due request to an idle connection, or queues it until one is free;
    callbacks only (no task or wake-up per request: the generator must stay cheap)."""

    def __init__(self, port: int, pool: list[_Connection], total: int, result: LoadResult) -> None:
        self._port = port
        self.started = time.perf_counter()
        self._replacing: set[asyncio.Future[None]] = set()
        self._idle = deque(pool)
        self.in_flight: dict[int, float] = {}  # id(connection) -> scheduled
        self._backlog: deque[tuple[float, bytes]] = deque()
        self._remaining = total
        self._result = result
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def submit(self, scheduled: float, data: bytes) -> None:
        if self._idle:
            self._start(self._idle.popleft(), scheduled, data)
        else:
            self._backlog.append((scheduled, data))

    def expire(self) -> None:
        """The run's deadline passed: everything still queued or in flight is a timeout
        (latency up to now, so the tail shows it)."""
        now = time.perf_counter()
        for scheduled in [*self.in_flight.values(), *(s for s, _ in self._backlog)]:
            self._result.record(TIMEOUT_STATUS, now - scheduled)
            self._result.due.append(scheduled - self.started)
        self._backlog.clear()
        if not self.finished.done():
            self.finished.set_result(None)

    def _start(self, connection: _Connection, scheduled: float, data: bytes) -> None:
        self.in_flight[id(connection)] = scheduled
        future = connection.request(data)
        future.add_done_callback(lambda done: self._done(connection, scheduled, done))

    def _done(self, connection: _Connection, scheduled: float, future: asyncio.Future[int]) -> None:
        failed = future.exception() is not None  # retrieved even when counted already
        if self.finished.done():  # already counted as a timeout
            return
        self._result.record(
            DROPPED_STATUS if failed else future.result(), time.perf_counter() - scheduled
        )
        self._result.due.append(scheduled - self.started)
        self.in_flight.pop(id(connection), None)
        self._remaining -= 1
        if failed:  # the server dropped this connection: replace it
            self._replacing.add(asyncio.ensure_future(self._replace()))
        elif self._backlog:
            self._start(connection, *self._backlog.popleft())
        else:
            self._idle.append(connection)
        if self._remaining == 0 and not self.finished.done():
            self.finished.set_result(None)

    async def _replace(self) -> None:
        connection = await _connect(self._port)
        if self._backlog:
            self._start(connection, *self._backlog.popleft())
        else:
            self._idle.append(connection)


async def _pace(requests: list[bytes], rate: float, open_loop: _OpenLoop, timeout: float) -> None:
    start = open_loop.started = time.perf_counter()
    interval = 1.0 / rate
    for index, data in enumerate(requests):
        when = start + index * interval
        delay = when - time.perf_counter()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        open_loop.submit(when, data)
    try:
        await asyncio.wait_for(asyncio.shield(open_loop.finished), timeout)
    except TimeoutError:
        open_loop.expire()


async def run_load(
    port: int,
    requests: list[bytes],
    connections: int,
    rate: float | None = None,
    timeout: float = 10.0,
) -> LoadResult:
    """Send every request over `connections` keep-alive connections; open loop if `rate`
    (then `connections` bounds the requests in flight). A request unanswered after
    `timeout` seconds (open loop: still pending `timeout` s after the last was due) is a
    timeout, never a success."""
    result = LoadResult()
    pool = [await _connect(port) for _ in range(connections)]
    cpu = time.process_time()
    start = time.perf_counter()
    if rate:
        await _pace(requests, rate, _OpenLoop(port, pool, len(requests), result), timeout)
    else:
        counter = [0]
        await asyncio.gather(
            *(_closed_loop(port, c, requests, counter, result, timeout) for c in pool)
        )
    result.seconds = time.perf_counter() - start
    result.client_cpu_seconds = time.process_time() - cpu
    for connection in pool:
        if connection.transport is not None:
            connection.transport.close()
    return result


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]
