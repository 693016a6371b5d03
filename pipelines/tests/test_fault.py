"""The fault test: a million events, a kill -9 of the dataflow and a 30 s ClickHouse outage.

`kibamail pipelines` runs as a real process tree. While 1,000,000 distinct status
events (plus re-sent duplicates) stream through, the correlation dataflow process is
killed with SIGKILL once (the supervisor restarts it; it resumes from its last Bytewax
snapshot and replays what followed) and the chDB gateway is stopped for 30 s (the sink
backs off, keeps its offsets uncommitted, and resumes). At the end ClickHouse holds
exactly one row per distinct event id.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from kibamail.contracts import MessageMapping, MessageStatus, MessageStatusEvent, Topic, serialize
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from local_stack.services import kibamail_spec, warehouse_spec
from local_stack.stack import Stack
from pipelines.tests.conftest import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS = int(os.environ.get("KIBAMAIL_FAULT_EVENTS", "1000000"))
DUPLICATES = EVENTS // 100
TEAM = "team-fault"


def children_of(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        kids += [int(k) for k in text]
    return kids


def flow_pid(supervisor: int, flow: str) -> int | None:
    for child in children_of(supervisor):
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"flow" in argv and flow.encode() in argv:
            return child
    return None


def rows(ch: Any, distinct: bool = False) -> int:
    what = "uniqExact(event_id)" if distinct else "count()"
    final = "FINAL" if distinct else ""
    return int(
        ch.query(
            f"SELECT {what} FROM raw_message_events {final} WHERE team_id = {{t:String}}",
            parameters={"t": TEAM},
        ).result_rows[0][0]
    )


def statuses(chunk: range) -> list[bytes]:
    """``serialize(MessageStatusEvent(...))`` of each event, the model built once per chunk
    and the ids put in its bytes: a million pydantic models cost the producer thread
    ~10 CPU-s that the pipeline under test needs on a 2-core machine. The flow validates
    every payload (an invalid one would be dead-lettered and missing at the end)."""
    template = serialize(
        MessageStatusEvent(
            event_id="fault-EVENT",
            team_id=TEAM,
            message_id="f-MESSAGE",
            status=MessageStatus.DELIVERED,
        )
    )
    head, rest = template.split(b"fault-EVENT")
    middle, tail = rest.split(b"f-MESSAGE")
    return [b"%sfault-%08d%sf-%d%s" % (head, i, middle, i, tail) for i in chunk]


def produce_all(settings: Settings, redis: Any, done: threading.Event) -> None:
    from confluent_kafka import Producer

    from kibamail.clients import kafka_producer_config

    mapping = serialize(MessageMapping(team_id=TEAM, broadcast_id="b-fault"))
    producer = Producer(kafka_producer_config(settings))
    pipe = redis.pipeline(transaction=False)
    for start in range(0, EVENTS, 10_000):
        chunk = range(start, min(EVENTS, start + 10_000))
        pipe.mset({RedisKeys.message_mapping(TEAM, f"f-{i}"): mapping for i in chunk})
        pipe.execute()
        payloads = statuses(chunk)
        # Re-sent events (an MTA retry after a lost ack): same event ids, no new rows.
        payloads += payloads[: len(payloads) * DUPLICATES // EVENTS]
        for payload in payloads:
            while True:
                try:
                    producer.produce(Topic.MESSAGE_STATUSES.value, payload)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(120) == 0
    done.set()


@pytest.mark.timeout(1800)
def test_million_events_survive_kill_and_clickhouse_outage(
    test_settings: Settings,
    test_stack: Stack,
    kafka_service: str,
    redis_service: str,
    warehouse_service: Any,
    warehouse_client: Any,
) -> None:
    import redis as redis_lib

    settings = test_settings
    spec = kibamail_spec(settings, "pipelines-fault", ["pipelines"],
                         settings.pipelines.metrics_port, "/metrics")  # fmt: skip
    supervisor = test_stack.start(spec)
    produced = threading.Event()
    producer = threading.Thread(
        target=produce_all,
        args=(settings, redis_lib.Redis.from_url(redis_service), produced),
        daemon=True,
    )
    producer.start()
    try:
        # 1. kill -9 the correlation dataflow mid-stream.
        assert wait_until(lambda: rows(warehouse_client) >= EVENTS // 10, 600, 1.0)
        victim = flow_pid(supervisor, "correlation")
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        assert wait_until(lambda: flow_pid(supervisor, "correlation") not in (None, victim), 60)

        # 2. ClickHouse (the gateway) down for 30 s, later in the run.
        assert wait_until(lambda: rows(warehouse_client) >= EVENTS * 4 // 10, 900, 1.0)
        test_stack.stop("warehouse")
        time.sleep(30)
        test_stack.start(warehouse_spec(settings))

        producer.join(timeout=900)
        assert produced.is_set()
        assert wait_until(lambda: rows(warehouse_client, distinct=True) >= EVENTS, 900, 2.0)
        time.sleep(3)  # anything still in flight would only add duplicates, never rows
        final_rows = int(
            warehouse_client.query(
                "SELECT count() FROM raw_message_events FINAL WHERE team_id = {t:String}",
                parameters={"t": TEAM},
            ).result_rows[0][0]
        )
        assert final_rows == EVENTS
        assert rows(warehouse_client, distinct=True) == EVENTS
    finally:
        test_stack.stop("pipelines-fault")
