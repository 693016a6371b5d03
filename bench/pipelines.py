"""Benchmark: Kafka -> correlation dataflow -> ClickHouse sink, against the broker's own limit.

Starts its own broker (Tansu), Redis and chDB gateway on free loopback ports, then:

1. throughput: N status events through the correlation dataflow (one Bytewax worker) and
   the ClickHouse sink (one consumer) until every event's row is queryable; a realistic
   status mix (delivered, deferred, bounced with provider texts) and 10 % of the message
   mappings arriving LATE (written to Redis only once the flow is running, so the
   "mapping not yet known" retry path is measured); baseline: a bare confluent-kafka
   consume-and-discard loop over the same topic in the same run. Both rates and the ratio.
2. warm throughput: with both processes up (and the sink's consumer group joined), N more
   events produced in one burst; from the first produce to the last row in ClickHouse.
   The cold figure above includes start-up, which a running platform pays once.
3. latency: a steady 5,000 events/s for a while (10 % of mappings written 0.3 s after
   their event); per event, produce time (its ``occurred_at``) to the row's insert time in
   ClickHouse (``ingested_at``); p50/p99/p99.9.

Rows are counted by distinct ``event_id``; a phase whose rows are not all queryable by
its deadline is ``"complete": false`` (and the run meets no target). Prints one JSON
line with CPU seconds and peak RSS per process and the load average during the run.
Targets: >= 50,000 events/s, p99 < 2 s.

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
from bench.report import RunMeter, finish
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


LATE_EVERY = 10  # message i's mapping arrives late when i % LATE_EVERY == LATE_EVERY - 1
# (status, code, response) by share of 100: the demo's mix of answers
MIX = (
    [(MessageStatus.DELIVERED, 250, "250 2.0.0 OK 1718000000 queued")] * 95
    + [(MessageStatus.DEFERRED, 451, "451 4.7.500 Server busy. Please try again later.")] * 3
    + [(MessageStatus.BOUNCED, 550, "550 5.1.1 The email account that you tried to reach "
        "does not exist. Please try double-checking the recipient's email address.")] * 2
)  # fmt: skip


def is_late(i: int) -> bool:
    return i % LATE_EVERY == LATE_EVERY - 1


def _events(team: str, count: int, start: int = 0) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(start, start + count):
        status, code, response = MIX[(i * 37) % len(MIX)]
        event = MessageStatusEvent(
            team_id=team,
            message_id=f"{team}-{i}",
            status=status,
            recipient=f"user{i}@gmail.com",
            recipient_domain="gmail.com",
            sender_domain="shop.example",
            source_ip="192.0.2.10",
            smtp_code=code,
            smtp_response=response,
        )
        out.append((event.message_id.encode(), serialize(event)))
    return out


def _map(settings: Settings, team: str, count: int, late: bool | None = False) -> None:
    """Writes the mappings of messages 0..count-1: the on-time ones (``late=False``), the
    late ones (``late=True``) or all (``None``)."""
    from kibamail.clients import redis_client

    client = redis_client(settings)
    pipe = client.pipeline(transaction=False)
    mapping = serialize(MessageMapping(team_id=team, broadcast_id="b1", tags=["bench"]))
    for i in range(count):
        if late is not None and is_late(i) != late:
            continue
        pipe.set(RedisKeys.message_mapping(team, f"{team}-{i}"), mapping)
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
    """Distinct events queryable (the sinks are idempotent by event_id)."""
    return int(
        ch.query(
            "SELECT uniqExact(event_id) FROM raw_message_events WHERE team_id = {t:String}",
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


def _wait_rows(ch: Any, team: str, count: int, timeout: float) -> tuple[float, int]:
    """(when the last row became queryable, rows): rows < count means the phase lost some."""
    deadline = time.monotonic() + timeout
    rows = 0
    while time.monotonic() < deadline:
        rows = _rows(ch, team)
        if rows >= count:
            return time.perf_counter(), rows
        time.sleep(0.1)
    return time.perf_counter(), rows


def per_thousand(seconds: dict[str, float], events: int) -> dict[str, float]:
    return {name: round(1000 * value / max(1, events), 4) for name, value in seconds.items()}


def throughput(
    settings: Settings, ch: Any, count: int, log_dir: Path, services: dict[str, int]
) -> dict[str, Any]:
    team = "bench-throughput"
    _map(settings, team, count, late=False)
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
    _map(settings, team, count, late=True)  # the flow is running: these arrive late
    first_count = _rows(ch, team)
    flow_cpu_first, sink_cpu_first = (process_cpu_seconds(proc.pid) for proc in procs)
    services_first = {name: process_cpu_seconds(pid) for name, pid in services.items()}
    done, rows = _wait_rows(ch, team, count, 600)
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
        "late_mappings": count // LATE_EVERY,
        "rows_queryable": rows,
        "unaccounted": count - rows,
        "complete": rows == count,
        "events_per_s": round(rows / (done - started)),
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
    _map(settings, team, count, late=False)
    events = _events(team, count)
    pids = {"flow": procs[0].pid, "sink": procs[1].pid, **services}
    before = {name: process_cpu_seconds(pid) for name, pid in pids.items()}
    meter = RunMeter()
    for name, pid in pids.items():
        meter.add(name, pid, children=False)
    meter.add_self("producer")
    meter.start()
    started = time.perf_counter()
    producer_cpu = _produce(settings, events)
    _map(settings, team, count, late=True)
    done, rows = _wait_rows(ch, team, count, 600)
    spent = {name: process_cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    report = meter.stop()
    return {
        "warm_events": count,
        "warm_rows_queryable": rows,
        "warm_unaccounted": count - rows,
        "warm_complete": rows == count,
        "warm_events_per_s": round(rows / (done - started)),
        "warm": report,
        "warm_cpu_s_per_1000_events": per_thousand({**spent, "producer": producer_cpu}, count),
    }


def latency(
    settings: Settings, ch: Any, rate: int, seconds: float, late_seconds: float = 0.3
) -> dict[str, Any]:
    """Steady `rate` events/s with occurred_at = produce time; p50/p99 to ingested_at.
    Every tenth mapping is written ``late_seconds`` after its event was produced."""
    from collections import deque

    from confluent_kafka import Producer

    from kibamail.clients import kafka_producer_config, redis_client

    team = "bench-latency"
    total = int(rate * seconds)
    _map(settings, team, total, late=False)
    redis = redis_client(settings)
    mapping = serialize(MessageMapping(team_id=team, broadcast_id="b1", tags=["bench"]))
    late: deque[tuple[float, str]] = deque()
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
            if is_late(sent):
                late.append((time.perf_counter() + late_seconds, event.message_id))
            sent += 1
        producer.poll(0)
        due = []
        while late and (late[0][0] <= time.perf_counter() or sent >= total):
            due.append(late.popleft()[1])
        if due:
            redis.mset({RedisKeys.message_mapping(team, m): mapping for m in due})
        next_tick = started + (sent / per_tick) * tick
        pause = next_tick - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    producer.flush(30)
    produce_rate = total / (time.perf_counter() - started)
    _, rows = _wait_rows(ch, team, total, 120)
    redis.close()
    p50, p99, p999, worst = ch.query(
        "SELECT quantileExact(0.5)(d), quantileExact(0.99)(d), quantileExact(0.999)(d), "
        "max(d) FROM ("
        "SELECT dateDiff('millisecond', occurred_at, ingested_at) AS d FROM raw_message_events "
        "WHERE team_id = {t:String})",
        parameters={"t": team},
    ).result_rows[0]
    return {
        "latency_rate_events_per_s": round(produce_rate),
        "latency_events": total,
        "latency_rows_queryable": rows,
        "latency_complete": rows == total,
        "latency_p50_s": round(p50 / 1000, 3),
        "latency_p99_s": round(p99 / 1000, 3),
        "latency_p99_9_s": round(p999 / 1000, 3),
        "latency_max_s": round(worst / 1000, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--rate", type=int, default=5_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--quick", action="store_true", help="smoke run: 20,000 events, 3 s")
    args = parser.parse_args()
    if args.quick:
        args.events, args.seconds = 20_000, 3.0
    from kibamail.clients import clickhouse_client, ensure_topics, migrate_warehouse

    with tempfile.TemporaryDirectory(prefix="bench-pipelines-") as tmp:
        settings = build_test_settings(Path(tmp))
        stack = Stack(settings.stack.state_dir)
        procs: list[subprocess.Popen[bytes]] = []
        try:
            services = {
                "broker": stack.start(kafka_spec(settings)),
                "redis": stack.start(redis_spec(settings, durable=True)),  # as shipped
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
            meter = RunMeter()
            for name, pid in {"flow": procs[0].pid, "sink": procs[1].pid, **services}.items():
                meter.add(name, pid, children=False)
            meter.add_self("producer")
            meter.start()
            result.update(warm_throughput(settings, ch, args.events, procs, services))
            result.update(latency(settings, ch, args.rate, args.seconds))
            result.update(meter.stop())  # CPU, peak RSS and load over the warm + latency runs
            result["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
            result["targets"] = {"events_per_s": 50_000, "latency_p99_s": 2.0}
            complete = bool(
                result["complete"] and result["warm_complete"] and result["latency_complete"]
            )
            finish(
                result,
                complete,
                {
                    "one_worker_ge_50k_events_per_s": max(
                        result["events_per_s_after_first_row"], result["warm_events_per_s"]
                    )
                    >= 50_000,
                    "p99_lt_2_s_at_5000": result["latency_p99_s"] < 2.0
                    and result["latency_rate_events_per_s"] >= 0.95 * args.rate,
                },
            )
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
