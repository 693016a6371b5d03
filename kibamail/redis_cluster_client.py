"""An asyncio Redis Cluster client that makes a burst wait for a connection.

redis-py's asyncio ``RedisCluster`` opens at most ``max_connections`` connections per
node and raises ``MaxConnectionsError`` for the next concurrent command instead of
waiting (its pool cannot block). An API process serving a burst of a few hundred sends
then answered some of them 500, where the single-node client's BlockingConnectionPool
makes them wait. Here every command and every pipeline first takes one of
``max_connections`` in-flight slots: each uses at most one connection per node, so no
node's pool can run dry, and the rest of the burst queues on the event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio.cluster import ClusterPipeline, RedisCluster

# In-flight commands and pipelines per client (and so connections per node at most).
MAX_IN_FLIGHT = 100


class WaitingRedisCluster(RedisCluster):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max_connections", MAX_IN_FLIGHT)
        super().__init__(*args, **kwargs)
        self.in_flight = asyncio.Semaphore(kwargs["max_connections"])

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.in_flight:
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        if shard_hint:  # refused like the parent's
            return super().pipeline(transaction, shard_hint)
        return _WaitingPipeline(self, transaction)  # type: ignore[abstract]


class _WaitingPipeline(ClusterPipeline):
    cluster_client: WaitingRedisCluster

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        async with self.cluster_client.in_flight:
            return await super().execute(raise_on_error, allow_redirections)
