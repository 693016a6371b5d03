"""The FastAPI application factory (one app per process; uvicorn may run several)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from redis.asyncio import BlockingConnectionPool
from redis.asyncio import Redis as AsyncRedis

from api.db import make_engine, make_sessionmaker
from api.errors import install_error_handlers
from api.fastpath.asgi import HotPaths
from api.middleware import BodyLimitMiddleware, MetricsAuthMiddleware, MetricsMiddleware
from api.openapi import install_openapi, operation_id
from api.routers import ROUTERS
from api.services.event_producer import EventProducer
from api.services.ratelimit import ApiKeyLimiter
from api.services.security import Signer
from api.services.sending import scheduler_loop
from api.state import AppState
from kibamail.clients import async_redis_client, redis_client
from kibamail.settings import Settings, get_settings

# Redis connections per API process. A blocking pool makes a burst of concurrent requests
# wait for a connection; redis-py's default pool (100) raises MaxConnectionsError -> 500.
REDIS_POOL_SIZE = 64
REDIS_POOL_WAIT_SECONDS = 10


def build_state(settings: Settings, producer: Any = None) -> AppState:
    engine = make_engine(settings.database.url, echo=settings.database.echo)
    if settings.redis.cluster:  # one pool per master, opened as the slot map asks
        redis = async_redis_client(settings)
    else:
        redis = AsyncRedis(
            connection_pool=BlockingConnectionPool.from_url(
                settings.redis.url,
                max_connections=REDIS_POOL_SIZE,
                timeout=REDIS_POOL_WAIT_SECONDS,
            )
        )
    return AppState(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        redis=redis,
        sync_redis=redis_client(settings),
        signer=Signer(settings.api.secret_key),
        producer=producer if producer is not None else EventProducer(settings),
        limiter=ApiKeyLimiter(
            redis, settings.api.rate_limit_per_second, settings.api.rate_limit_burst
        ),
    )


def create_app(
    settings: Settings | None = None,
    *,
    producer: Any = None,
    run_scheduler: bool = True,
) -> FastAPI:
    """Build the app; the database must already be migrated (`kibamail api migrate`)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = build_state(settings, producer)
        app.state.km = state
        scheduler = asyncio.create_task(scheduler_loop(state.redis)) if run_scheduler else None
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await scheduler
            state.producer.close(timeout=5)
            if settings.redis.cluster:  # RedisCluster closes its node pools itself
                await state.redis.aclose()
            else:
                await state.redis.aclose(close_connection_pool=True)
            state.sync_redis.close()
            state.engine.dispose()

    app = FastAPI(
        title="Kibamail API",
        version="1.0",
        description="Transactional and marketing email: send, track, manage teams and contacts.",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    install_openapi(app)
    app.add_middleware(HotPaths)  # innermost: body limit and metrics apply to it too
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.api.max_request_bytes)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(MetricsAuthMiddleware, token=settings.api.metrics_token)  # outermost
    return app
