"""Per-process resources the app shares between requests (built once in the lifespan)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.services.ratelimit import ApiKeyLimiter
from api.services.security import Signer
from kibamail.settings import Settings


class TtlCache:
    """Tiny per-process cache for hot, rarely-changing lookups (verified domains)."""

    def __init__(self, ttl_seconds: float, max_entries: int = 50_000) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._data: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> Any:
        hit = self._data.get(key)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, key: Any, value: Any) -> None:
        if len(self._data) >= self._max:
            self._data.clear()
        self._data[key] = (time.monotonic() + self._ttl, value)

    def clear(self) -> None:
        self._data.clear()


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    redis: Any  # redis.asyncio.Redis
    sync_redis: Any  # redis.Redis, for code running in the threadpool
    signer: Signer
    producer: Any  # api.services.event_producer.EventProducer
    limiter: ApiKeyLimiter
    domain_cache: TtlCache = field(default_factory=lambda: TtlCache(5.0))
    clickhouse: Any = None  # clickhouse-connect client, created on first read
    send_now_script: Any = None  # api.services.sending's Lua script, registered on first send
    hot_send_script: Any = (
        None  # api.fastpath.send_script's one-trip script, registered on first send
    )
    # API-key hash -> api.fastpath.send_script.KeyRecord; checked against Redis on every send.
    api_key_records: dict[str, Any] = field(default_factory=dict)
    # API key hash -> its team id (api.services.ratelimit.key_team): never changes, so kept.
    api_key_teams: dict[str, str] = field(default_factory=dict)
    # api.services.event_producer.EventOutbox (tracking events), created on first hit.
    event_outbox: Any = None

    def warehouse(self) -> Any:
        """The shared ClickHouse client, created on first use (no per-client session, so
        concurrent requests in the threadpool can share it)."""
        if self.clickhouse is None:
            from kibamail.clients import clickhouse_client

            self.clickhouse = clickhouse_client(self.settings, autogenerate_session_id=False)
        return self.clickhouse
