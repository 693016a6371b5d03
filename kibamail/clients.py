"""Connections to the shared services, built from Settings so every process agrees."""

from __future__ import annotations

from typing import Any

from kibamail.contracts import Topic
from kibamail.redis_batching import is_cluster_client as is_cluster_client  # re-export
from kibamail.settings import Settings, get_settings


def clickhouse_client(settings: Settings | None = None, **kwargs: Any) -> Any:
    """clickhouse-connect over HTTP: the chDB gateway locally, a ClickHouse cluster in prod."""
    import clickhouse_connect

    ch = (settings or get_settings()).clickhouse
    return clickhouse_connect.get_client(
        host=ch.host,
        port=ch.port,
        username=ch.username,
        password=ch.password,
        database=kwargs.pop("database", ch.database),
        secure=ch.secure,
        **kwargs,
    )


def redis_client(settings: Settings | None = None, **kwargs: Any) -> Any:
    """redis.Redis, or redis.cluster.RedisCluster with ``redis.cluster`` (the URL names
    any master; the client learns the slot map and follows MOVED/ASK redirections)."""
    import redis
    import redis.cluster

    conf = (settings or get_settings()).redis
    if conf.cluster:
        return redis.cluster.RedisCluster.from_url(_cluster_url(conf.url), **kwargs)
    return redis.Redis.from_url(conf.url, **kwargs)


def async_redis_client(settings: Settings | None = None, **kwargs: Any) -> Any:
    """The asyncio twin of redis_client (on a cluster, one that waits for a connection:
    ``kibamail.redis_cluster_client``)."""
    import redis.asyncio

    conf = (settings or get_settings()).redis
    if conf.cluster:
        from kibamail.redis_cluster_client import WaitingRedisCluster

        return WaitingRedisCluster.from_url(_cluster_url(conf.url), **kwargs)
    return redis.asyncio.Redis.from_url(conf.url, **kwargs)


def _cluster_url(url: str) -> str:
    """A cluster has only database 0: drop a '/0' path the single-node URL may carry."""
    base, _, db = url.rpartition("/")
    return base if "://" in base and db in ("0", "") else url


def kafka_producer_config(settings: Settings | None = None, **overrides: Any) -> dict[str, Any]:
    """Idempotent, batched producer: no duplicates from retries, acks from all replicas."""
    config: dict[str, Any] = {
        **(settings or get_settings()).kafka.client_config(),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
    }
    config.update(overrides)
    return config


def kafka_consumer_config(
    group_id: str, settings: Settings | None = None, **overrides: Any
) -> dict[str, Any]:
    kafka = (settings or get_settings()).kafka
    config: dict[str, Any] = {
        **kafka.client_config(),
        "group.id": group_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": kafka.session_timeout_ms,
        "heartbeat.interval.ms": max(500, kafka.session_timeout_ms // 4),
    }
    config.update(overrides)
    return config


def ensure_topics(settings: Settings | None = None, timeout: float = 10.0) -> list[str]:
    """Create every contract topic that does not exist yet; returns those created."""
    from confluent_kafka.admin import AdminClient, NewTopic

    settings = settings or get_settings()
    admin = AdminClient(settings.kafka.client_config())
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [t.value for t in Topic if t.value not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [
            NewTopic(
                name,
                num_partitions=settings.kafka.topic_partitions,
                replication_factor=settings.kafka.topic_replication_factor,
            )
            for name in missing
        ],
        operation_timeout=timeout,
    )
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
        _ = name
    return missing


def migrate_warehouse(settings: Settings | None = None) -> list[str]:
    from kibamail.clickhouse_schema import migrate

    settings = settings or get_settings()
    client = clickhouse_client(settings, database="default")
    return migrate(client, settings.clickhouse.database, settings.clickhouse.cluster)
