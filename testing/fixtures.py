"""Pytest fixtures that start REAL services for integration and end-to-end tests.

Each service starts lazily (only when a test asks for it), once per session, on free
loopback ports with its own state dir, so `make test` runs beside `make up`.
Everything started here is stopped at session end, by recorded PID.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from kibamail.settings import (
    ApiSettings,
    ClickHouseSettings,
    DagsterSettings,
    DatabaseSettings,
    KafkaSettings,
    MtaSettings,
    PipelineSettings,
    RedisSettings,
    Settings,
    StackSettings,
    get_settings,
    settings_to_env,
)
from local_stack.services import kafka_spec, mariadb_spec, redis_spec, warehouse_spec
from local_stack.stack import Stack, free_port
from testing.redis_cluster import RedisClusterHandle, start_cluster, stop_cluster


def build_test_settings(state_dir: Path) -> Settings:
    """Settings on free ports under one state dir (nothing shared with `make up`)."""
    api_port = free_port()
    return Settings(
        environment="development",
        kafka=KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}", session_timeout_ms=6000),
        # A warehouse token (the ClickHouse password) even here, so the gateway's auth is
        # exercised by every client the tests run.
        clickhouse=ClickHouseSettings(
            port=free_port(),
            data_dir=state_dir / "chdb",
            database="kibamail_test",
            password=f"test-warehouse-{secrets.token_hex(8)}",
        ),
        # The session Redis keeps nothing on disk (redis_service): nothing to wait for.
        redis=RedisSettings(url=f"redis://127.0.0.1:{free_port()}/0", durability="none"),
        database=DatabaseSettings(url=f"sqlite:///{state_dir / 'kibamail.db'}"),
        api=ApiSettings(
            port=api_port,
            public_url=f"http://127.0.0.1:{api_port}",
            secret_key="test-secret-key-not-for-production",
            metrics_token=f"test-metrics-{secrets.token_hex(8)}",
        ),
        mta=MtaSettings(
            submission_port=free_port(),
            smtps_port=free_port(),
            inbound_port=free_port(),
            metrics_port=free_port(),
            dns_servers=["127.0.0.1"],
            dns_port=free_port(),
            delivery_port=free_port(),
        ),
        pipelines=PipelineSettings(
            recovery_dir=state_dir / "bytewax-recovery", metrics_port=free_port()
        ),
        dagster=DagsterSettings(home=state_dir / "dagster", webserver_port=free_port()),
        stack=StackSettings(state_dir=state_dir),
    )


@pytest.fixture(scope="session")
def test_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Session settings, also exported as KIBAMAIL_* so in-process get_settings() agrees."""
    state_dir = tmp_path_factory.mktemp("stack")
    settings = build_test_settings(state_dir)
    saved = dict(os.environ)
    os.environ.update(settings_to_env(settings))
    get_settings.cache_clear()
    yield settings
    os.environ.clear()
    os.environ.update(saved)
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def test_stack(test_settings: Settings) -> Iterator[Stack]:
    stack = Stack(test_settings.stack.state_dir)
    yield stack
    stack.stop_all(order=["pipelines", "mta", "api", "testnet", "warehouse", "kafka", "redis"])


@pytest.fixture(scope="session")
def kafka_service(test_settings: Settings, test_stack: Stack) -> str:
    """A real Kafka-protocol broker (Tansu); returns the bootstrap servers."""
    from kibamail.clients import ensure_topics

    test_stack.start(kafka_spec(test_settings))
    ensure_topics(test_settings)
    return test_settings.kafka.bootstrap_servers


@pytest.fixture(scope="session")
def redis_service(test_settings: Settings, test_stack: Stack) -> str:
    test_stack.start(redis_spec(test_settings, durable=False))
    return test_settings.redis.url


@pytest.fixture(scope="session")
def warehouse_service(test_settings: Settings, test_stack: Stack) -> ClickHouseSettings:
    """The chDB gateway as a real subprocess, migrated; returns its ClickHouse settings."""
    from kibamail.clients import migrate_warehouse

    test_stack.start(warehouse_spec(test_settings))
    migrate_warehouse(test_settings)
    return test_settings.clickhouse


@pytest.fixture(scope="session")
def mariadb_url(test_settings: Settings, test_stack: Stack) -> str:
    """A real MariaDB server; returns a SQLAlchemy URL to an empty database."""
    import sqlalchemy

    port = free_port()
    test_stack.start(mariadb_spec(test_settings.stack.state_dir, port))
    root = sqlalchemy.create_engine(f"mysql+pymysql://root@127.0.0.1:{port}/")
    with root.begin() as conn:
        conn.exec_driver_sql("CREATE DATABASE IF NOT EXISTS kibamail_test CHARACTER SET utf8mb4")
    root.dispose()
    return f"mysql+pymysql://root@127.0.0.1:{port}/kibamail_test?charset=utf8mb4"


@pytest.fixture
def redis_client(redis_service: str) -> Iterator[object]:
    """A client on a flushed database for one test."""
    import redis

    client = redis.Redis.from_url(redis_service)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def clickhouse(warehouse_service: ClickHouseSettings) -> object:
    from kibamail.clients import clickhouse_client

    return clickhouse_client()


@pytest.fixture(scope="module")
def isolated_warehouse(
    test_settings: Settings, warehouse_service: ClickHouseSettings, request: pytest.FixtureRequest
) -> Settings:
    """Settings whose ClickHouse database belongs to one test module (migrated, empty).

    Modules that assert on whole tables (dbt tests, marts) must not see rows that other
    modules' tests wrote into the shared session database.
    """
    import re

    from kibamail.clients import migrate_warehouse

    module = request.module.__name__.rsplit(".", 1)[-1]
    database = "kibamail_" + re.sub(r"[^a-z0-9_]", "_", module.lower())
    clickhouse = test_settings.clickhouse.model_copy(update={"database": database})
    settings = test_settings.model_copy(update={"clickhouse": clickhouse})
    migrate_warehouse(settings)
    return settings


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterHandle]:
    """A real 3-master Redis Cluster (testing.redis_cluster): ``.settings`` is the
    RedisSettings(cluster=True) to use, ``.client()`` a sync RedisCluster, ``.flush()``
    empties it, ``.master_of_slot``/``.keys_per_master`` show where keys went."""
    handle = start_cluster(tmp_path_factory.mktemp("redis-cluster"))
    yield handle
    stop_cluster(handle)
