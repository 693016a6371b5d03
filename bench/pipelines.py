"""Benchmark: Kafka -> correlation dataflow -> ClickHouse sink, against the broker's own limit.

Starts its own broker (Tansu), Redis and chDB gateway on free loopback ports, then:

1. throughput: N status events (mappings in Redis) through the correlation dataflow
   (one Bytewax worker) and the ClickHouse sink (one consumer) until every row is in
   ClickHouse; baseline: a bare confluent-kafka consume-and-discard loop over the same
   topic in the same run. Prints both rates and the ratio.
2. warm throughput: with both processes up (and the sink's consumer group joined), N more
   events produced in one burst; from the first produce to the last row in ClickHouse.
   The cold figure above includes start-up, which a running platform pays once.
3. latency: a steady 5,000 events/s for a while; per event, produce time (its
   ``occurred_at``) to the row's insert time in ClickHouse (``ingested_at``); p50/p99.

Prints one JSON line. Targets: >= 50,000 events/s, p99 < 2 s.

Where the time goes: CPU-seconds per 1,000 events of every process on the path (the
dataflow, the sink, the chDB gateway, the broker, Redis) while the pipeline ran, and of
the producer (this process) while it produced. The machine may be shared: wall-clock
rates depend on the neighbours, CPU per event much less (see the load averages).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.cpu import process_cpu_seconds
from kibamail.contracts import MessageMapping, MessageStatus, MessageStatusEvent, Topic, serialize
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings, settings_to_env
from local_stack.services import kafka_spec, redis_spec, warehouse_spec
from local_stack.stack import Stack
from testing.fixtures import build_test_settings


def _produce(settings: Settings, payloads: list[tuple[bytes, bytes]]) -> float:
    """Produces every payload; returns this process's CPU-seconds spent doing it."""
    from confluent_kafka import Producer

    from kibamail.clients import kafka_producer_config

    producer = Producer(kafka_producer_config(settings, **{"linger.ms": 20}))
    started = time.process_time()
    for key, value in payloads:
        while True:
            try:
                producer.produce(Topic.MESSAGE_STATUSES.value, value, key=key)
                break
            except BufferError:
                producer.poll(0.01)
    assert producer.flush(60) == 0
    return time.process_time() - started


def _events(team: str, count: int, start: int = 0) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(start, start + count):
        event = MessageStatusEvent(
            team_id=team,
            message_id=f"{team}-{i}",
            status=MessageStatus.DELIVERED,
            recipient=f"user{i}@gmail.com",
            recipient_domain="gmail.com",
            sender_domain="shop.example",
            source_ip="192.0.2.10",
            smtp_code=250,
            smtp_response="250 2.0.0 OK queued",
        )
        out.append((event.message_id.encode(), serialize(event)))
    return out


def _map(settings: Settings, team: str, count: int) -> None:
    from kibamail.clients import redis_client

    client = redis_client(settings)
    pipe = client.pipeline(transaction=False)
    mapping = serialize(MessageMapping(team_id=team, broadcast_id="b1", tags=["bench"]))
    for i in range(count):
        pipe.set(RedisKeys.message_mapping(f"{team}-{i}"), mapping)
        if i % 10_000 == 9_999:
            pipe.execute()
    pipe.execute()


def bare_consume(settings: Settings, count: int) -> float:
    """Seconds for confluent-kafka to read `count` messages of the topic and discard them."""
    from confluent_kafka import Consumer, TopicPartition

    from kibamail.clients import kafka_consumer_config

    consumer = Consumer(
        kafka_consumer_config(
            "bench-bare", settings, **{"fetch.wait.max.ms": 50, "queued.min.messages": 20000}
        )
    )
    consumer.assign([TopicPartition(Topic.MESSAGE_STATUSES.value, 0, 0)])
    seen = 0
    started = time.perf_counter()
    while seen < count:
        for msg in consumer.consume(5000, 1.0):
            if msg.error() is None:
                seen += 1
    elapsed = time.perf_counter() - started
    consumer.close()
    return elapsed


def _rows(ch: Any, team: str) -> int:
    return int(
        ch.query(
            "SELECT count() FROM raw_message_events WHERE team_id = {t:String}",
            parameters={"t": team},
        ).result_rows[0][0]
    )


def _start_pipeline(settings: Settings, log_dir: Path) -> list[subprocess.Popen[bytes]]:
    from pipelines import recovery

    recovery.prepare(settings, ["correlation"], 1)
    env = {**os.environ, **settings_to_env(settings)}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(log_dir / "metrics")
    (log_dir / "metrics").mkdir(exist_ok=True)
    procs = []
    for name, args in (("flow", ["flow", "correlation"]), ("sink", ["sink"])):
        log = (log_dir / f"bench-{name}.log").open("ab")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "pipelines.run", *args], env=env, stdout=log, stderr=log
            )
        )
    return procs


def _wait_rows(ch: Any, team: str, count: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _rows(ch, team) >= count:
            return time.perf_counter()
        time.sleep(0.1)
    raise RuntimeError(f"only {_rows(ch, team)} of {count} rows after {timeout}s")


def per_thousand(seconds: dict[str, float], events: int) -> dict[str, float]:
    return {name: round(1000 * value / max(1, events), 4) for name, value in seconds.items()}


def throughput(
    settings: Settings, ch: Any, count: int, log_dir: Path, services: dict[str, int]
) -> dict[str, Any]:
    team = "bench-throughput"
    _map(settings, team, count)
    producer_cpu = _produce(settings, _events(team, count))
    bare = bare_consume(settings, count)
    services_cpu = {name: process_cpu_seconds(pid) for name, pid in services.items()}
    started = time.perf_counter()
    procs = _start_pipeline(settings, log_dir)
    # Wall time includes both processes' start-up and the first group join.
    first_row = None
    while first_row is None:
        if _rows(ch, team) > 0:
            first_row = time.perf_counter()
        time.sleep(0.05)
    first_count = _rows(ch, team)
    flow_cpu_first, sink_cpu_first = (process_cpu_seconds(proc.pid) for proc in procs)
    services_first = {name: process_cpu_seconds(pid) for name, pid in services.items()}
    done = _wait_rows(ch, team, count, 600)
    flow_cpu, sink_cpu = (process_cpu_seconds(proc.pid) for proc in procs)
    services_done = {
        name: process_cpu_seconds(pid) - services_cpu[name] for name, pid in services.items()
    }
    services_steady = {
        name: process_cpu_seconds(pid) - services_first[name] for name, pid in services.items()
    }
    steady = (count - first_count) / max(1e-9, done - first_row)
    steady_events = count - first_count
    return {
        "events": count,
        "events_per_s": round(count / (done - started)),
        "events_per_s_after_first_row": round(steady),
        "baseline_bare_consume_events_per_s": round(count / bare),
        "ratio_to_bare_consume": round(steady / (count / bare), 3),
        # On a shared, overloaded machine wall-clock rates mostly measure the neighbours;
        # events per CPU-second of each process is what one dedicated core would do.
        "flow_cpu_s": round(flow_cpu, 1),
        "sink_cpu_s": round(sink_cpu, 1),
        "flow_events_per_cpu_s": round(count / flow_cpu),
        "sink_events_per_cpu_s": round(count / sink_cpu),
        # The same after the first row: start-up (imports, connecting) left out.
        "flow_events_per_cpu_s_steady": round(steady_events / max(1e-9, flow_cpu - flow_cpu_first)),
        "sink_events_per_cpu_s_steady": round(steady_events / max(1e-9, sink_cpu - sink_cpu_first)),
        # CPU-seconds per 1,000 events: whole run (start-up included) and after the first row.
        "cpu_s_per_1000_events": per_thousand(
            {"flow": flow_cpu, "sink": sink_cpu, **services_done, "producer": producer_cpu},
            count,
        ),
        "cpu_s_per_1000_events_steady": per_thousand(
            {"flow": flow_cpu - flow_cpu_first, "sink": sink_cpu - sink_cpu_first}
            | services_steady,
            steady_events,
        ),
        "_procs": procs,
    }


def warm_throughput(
    settings: Settings,
    ch: Any,
    count: int,
    procs: list[subprocess.Popen[bytes]],
    services: dict[str, int],
) -> dict[str, Any]:
    """N events produced in a burst into the running pipeline; first produce to last row."""
    team = "bench-warm"
    _map(settings, team, count)
    events = _events(team, count)
    pids = {"flow": procs[0].pid, "sink": procs[1].pid, **services}
    before = {name: process_cpu_seconds(pid) for name, pid in pids.items()}
    started = time.perf_counter()
    producer_cpu = _produce(settings, events)
    done = _wait_rows(ch, team, count, 600)
    spent = {name: process_cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    return {
        "warm_events": count,
        "warm_events_per_s": round(count / (done - started)),
        "warm_cpu_s_per_1000_events": per_thousand({**spent, "producer": producer_cpu}, count),
    }


def latency(settings: Settings, ch: Any, rate: int, seconds: float) -> dict[str, float]:
    """Steady `rate` events/s with occurred_at = produce time; p50/p99 to ingested_at."""
    from confluent_kafka import Producer

    from kibamail.clients import kafka_producer_config

    team = "bench-latency"
    total = int(rate * seconds)
    _map(settings, team, total)
    producer = Producer(kafka_producer_config(settings, **{"linger.ms": 2}))
    tick = 0.01
    per_tick = max(1, int(rate * tick))
    started = time.perf_counter()
    sent = 0
    while sent < total:
        for _ in range(min(per_tick, total - sent)):
            event = MessageStatusEvent(
                team_id=team, message_id=f"{team}-{sent}", status=MessageStatus.DELIVERED
            )
            producer.produce(Topic.MESSAGE_STATUSES.value, serialize(event), key=None)
            sent += 1
        producer.poll(0)
        next_tick = started + (sent / per_tick) * tick
        pause = next_tick - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    producer.flush(30)
    produce_rate = total / (time.perf_counter() - started)
    _wait_rows(ch, team, total, 120)
    p50, p99, worst = ch.query(
        "SELECT quantileExact(0.5)(d), quantileExact(0.99)(d), max(d) FROM ("
        "SELECT dateDiff('millisecond', occurred_at, ingested_at) AS d FROM raw_message_events "
        "WHERE team_id = {t:String})",
        parameters={"t": team},
    ).result_rows[0]
    return {
        "latency_rate_events_per_s": round(produce_rate),
        "latency_events": total,
        "latency_p50_s": round(p50 / 1000, 3),
        "latency_p99_s": round(p99 / 1000, 3),
        "latency_max_s": round(worst / 1000, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--rate", type=int, default=5_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    from kibamail.clients import clickhouse_client, ensure_topics, migrate_warehouse

    with tempfile.TemporaryDirectory(prefix="bench-pipelines-") as tmp:
        settings = build_test_settings(Path(tmp))
        stack = Stack(settings.stack.state_dir)
        procs: list[subprocess.Popen[bytes]] = []
        try:
            services = {
                "broker": stack.start(kafka_spec(settings)),
                "redis": stack.start(redis_spec(settings, durable=False)),
                "gateway": stack.start(warehouse_spec(settings)),
            }
            ensure_topics(settings)
            migrate_warehouse(settings)
            ch = clickhouse_client(settings)
            # The machine is shared: the load average says how much CPU the run really had.
            result: dict[str, Any] = {
                "benchmark": "pipelines",
                "cpus": os.cpu_count(),
                "load_average_1m_at_start": round(os.getloadavg()[0], 2),
            }
            measured = throughput(settings, ch, args.events, Path(tmp), services)
            procs = measured.pop("_procs")
            result.update(measured)
            result.update(warm_throughput(settings, ch, args.events, procs, services))
            result.update(latency(settings, ch, args.rate, args.seconds))
            result["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
            result["targets"] = {"events_per_s": 50_000, "latency_p99_s": 2.0}
            print(orjson.dumps(result).decode())
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            stack.stop_all(order=["warehouse", "kafka", "redis"])


if __name__ == "__main__":
    main()
