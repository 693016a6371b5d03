"""The correlation dataflow as a two-process Bytewax cluster on loopback.

A broker of this test's own (every topic with two partitions), two
``python -m pipelines.run flow correlation`` processes configured only through
``PipelineSettings.addresses`` / ``process_id``, one shared recovery dir. Statuses go
to both partitions; every event comes out on ``clickhouse_smtp_messages`` exactly once,
and each process did part of the work (its own partition).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from kibamail.contracts import MessageMapping, MessageStatus, Topic, serialize
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings, settings_to_env
from local_stack.services import kafka_spec
from local_stack.stack import Stack, free_port
from pipelines.kafka_io import partitions_of_process
from pipelines.tests.fakes import status_event

pytestmark = pytest.mark.integration

EVENTS = 4000
TEAM = "team-cluster"


def test_partitions_are_spread_over_processes() -> None:
    parts = [f"{i}-t" for i in range(5)]
    assert partitions_of_process(parts, 0, 2) == ["0-t", "2-t", "4-t"]
    assert partitions_of_process(parts, 1, 2) == ["1-t", "3-t"]
    assert partitions_of_process(parts, 0, 1) == parts


def test_each_flow_is_its_own_cluster_on_shifted_ports(test_settings: Settings) -> None:
    from pipelines.run import cluster_addresses

    pipelines = test_settings.pipelines.model_copy(
        update={"addresses": ["10.0.0.1:2101", "10.0.0.2:2101"]}
    )
    settings = test_settings.model_copy(update={"pipelines": pipelines})
    assert cluster_addresses(settings, "correlation") == ["10.0.0.1:2101", "10.0.0.2:2101"]
    assert cluster_addresses(settings, "scoring") == ["10.0.0.1:2103", "10.0.0.2:2103"]


@pytest.fixture
def cluster_settings(
    test_settings: Settings, test_stack: Stack, tmp_path: Path
) -> Iterator[Settings]:
    kafka = test_settings.kafka.model_copy(
        update={"bootstrap_servers": f"127.0.0.1:{free_port()}", "topic_partitions": 2}
    )
    pipelines = test_settings.pipelines.model_copy(
        update={
            "recovery_dir": tmp_path / "recovery",
            "addresses": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"],
        }
    )
    settings = test_settings.model_copy(update={"kafka": kafka, "pipelines": pipelines})
    spec = kafka_spec(settings)
    spec.name = "kafka-cluster-test"
    test_stack.start(spec)
    from kibamail.clients import ensure_topics

    ensure_topics(settings)
    yield settings
    test_stack.stop("kafka-cluster-test")


def produce(settings: Settings, payloads: list[bytes]) -> None:
    from confluent_kafka import Producer

    from kibamail.clients import kafka_producer_config

    producer = Producer(kafka_producer_config(settings))
    for index, payload in enumerate(payloads):
        producer.produce(Topic.MESSAGE_STATUSES.value, payload, partition=index % 2)
        producer.poll(0)
    assert producer.flush(30) == 0


def read_output(settings: Settings, want: int, timeout: float = 120) -> list[dict[str, Any]]:
    """Every correlated event of this team on both partitions; reads on past ``want``."""
    from confluent_kafka import Consumer, TopicPartition

    from kibamail.clients import kafka_consumer_config

    consumer = Consumer(kafka_consumer_config("cluster-test-reader", settings))
    topic = Topic.CLICKHOUSE_MESSAGES.value
    consumer.assign([TopicPartition(topic, 0, 0), TopicPartition(topic, 1, 0)])
    rows: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    quiet_until = None
    try:
        while time.monotonic() < deadline:
            batch = [m for m in consumer.consume(1000, 0.5) if m.error() is None]
            rows += [
                row for m in batch if (row := orjson.loads(m.value() or b""))["team_id"] == TEAM
            ]
            if len(rows) >= want and quiet_until is None:
                quiet_until = time.monotonic() + 3  # duplicates would show up now
            if quiet_until is not None and time.monotonic() > quiet_until:
                break
    finally:
        consumer.close()
    return rows


def events_in(metrics_dir: Path, pid: int) -> float:
    from prometheus_client.multiprocess import MultiProcessCollector

    files = [str(p) for p in metrics_dir.glob(f"counter_{pid}.db")]
    for metric in MultiProcessCollector.merge(files, accumulate=True):
        if metric.name == "kibamail_pipeline_events_in":
            return sum(s.value for s in metric.samples if s.labels.get("flow") == "correlation")
    return 0.0


@pytest.mark.timeout(300)
def test_two_process_cluster_correlates_every_event_once(
    cluster_settings: Settings, redis_client: Any, tmp_path: Path
) -> None:
    from pipelines import recovery

    settings = cluster_settings
    mapping = serialize(MessageMapping(team_id=TEAM, broadcast_id="b-cluster"))
    pipe = redis_client.pipeline(transaction=False)
    for i in range(EVENTS):
        pipe.set(RedisKeys.message_mapping(TEAM, f"c-{i}"), mapping)
    pipe.execute()
    recovery.prepare(settings, ["correlation"], 2)

    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    for process_id in (0, 1):
        env = {
            **os.environ,
            **settings_to_env(settings),
            "KIBAMAIL_PIPELINES__PROCESS_ID": str(process_id),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        }
        log = (tmp_path / f"flow-{process_id}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "pipelines.run", "flow", "correlation"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    try:
        events = [
            status_event(f"c-{i}", MessageStatus.DELIVERED, TEAM, event_id=f"cluster-{i:05d}")
            for i in range(EVENTS)
        ]
        produce(settings, [serialize(e) for e in events])
        rows = read_output(settings, EVENTS)
        assert all(proc.poll() is None for proc in procs), "a cluster process died"
        counts = Counter(row["event_id"] for row in rows)
        assert set(counts) == {e.event_id for e in events}
        assert max(counts.values()) == 1
        assert {row["broadcast_id"] for row in rows} == {"b-cluster"}
        # Each process read its own partition: half of the events each.
        assert [events_in(metrics_dir, proc.pid) for proc in procs] == [EVENTS / 2] * 2
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
