"""Fixtures of the pipeline tests: a producer on the real broker and a ClickHouse client."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kibamail.settings import Settings


@pytest.fixture
def produce(kafka_service: str, test_settings: Settings) -> Iterator[Callable[..., int]]:
    """produce(topic, [payload, ...], keys) -> the partition-0 end offset after delivery.

    The end offset comes from delivery reports: the local broker's ListOffsets answer is
    wrong (pipelines/README.md), so tests never ask it for the high watermark.
    """
    from confluent_kafka import Producer

    from kibamail.clients import kafka_producer_config

    producer = Producer(kafka_producer_config(test_settings))

    def send(topic: str, payloads: list[bytes], keys: list[bytes] | None = None) -> int:
        end = [-1]

        def delivered(err: Any, msg: Any) -> None:
            assert err is None, err
            end[0] = max(end[0], msg.offset() + 1)

        for index, payload in enumerate(payloads):
            key = keys[index] if keys else None
            while True:
                try:
                    producer.produce(topic, payload, key=key, on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
        assert producer.flush(30) == 0
        return end[0]

    yield send
    producer.flush(10)


@pytest.fixture(scope="session")
def warehouse_client(warehouse_service: Any, test_settings: Settings) -> Any:
    """clickhouse-connect on the chDB gateway subprocess (migrated by the fixture)."""
    from kibamail.clients import clickhouse_client

    return clickhouse_client(test_settings)


def wait_until(check: Callable[[], bool], timeout: float = 30.0, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()
