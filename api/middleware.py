"""Pure-ASGI middleware (cheap on the hot path): body size limit, request metrics and the
bearer token in front of /metrics."""

from __future__ import annotations

import hmac
import time
from typing import Any

from prometheus_client import Counter, Histogram

from api.errors import error_response

REQUESTS = Counter("kibamail_api_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "kibamail_api_request_seconds",
    "HTTP request latency",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

Scope = dict[str, Any]


class BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """413 before reading a body whose Content-Length is too big, or once a stream is."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._too_large(scope, receive, send)
                    return
        seen = 0
        started = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Any, send: Any) -> None:
        response = error_response(413, f"request body exceeds {self.max_bytes} bytes")
        await response(scope, receive, send)


class MetricsMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            REQUESTS.labels(scope["method"], path, str(status[0])).inc()
            LATENCY.labels(path).observe(time.perf_counter() - start)


class MetricsAuthMiddleware:
    """GET /metrics only with ``Authorization: Bearer <api.metrics_token>``.

    The API listens publicly, and its metrics name routes, volumes and error rates. No
    token configured: /metrics does not exist (404); a missing or wrong token: 401."""

    PATH = "/metrics"

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode() if token else b""

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") != self.PATH:
            await self.app(scope, receive, send)
            return
        if not self.expected:
            await error_response(404, "Not Found")(scope, receive, send)
            return
        given = next((v for k, v in scope.get("headers", []) if k == b"authorization"), b"")
        if not hmac.compare_digest(given, self.expected):
            response = error_response(
                401,
                "a valid metrics bearer token is required",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
