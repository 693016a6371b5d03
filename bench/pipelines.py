"""Benchmark: Kafka -> correlation dataflow -> ClickHouse sink, against the broker's own limit.

Starts its own broker (Tansu), Redis and chDB gateway on free loopback ports, then:

1. cold throughput (a deploy's restart): N status events waiting in Kafka, then the
   correlation dataflow (one Bytewax worker) and the ClickHouse sink (one consumer) are
   started, until every event's row is queryable; a realistic status mix (delivered,
   deferred, bounced with provider texts) and 10 % of the message mappings arriving LATE
   (written to Redis only once the first row is queryable, so the "mapping not yet
   known" retry path is measured); baseline: a bare confluent-kafka consume-and-discard
   loop over the same topic in the same run. Both rates, the ratio, and ``cold_phases``
   (seconds from the start: the flow's first output, the first row and how many events
   the flow had correlated by then, late mappings written, last row). The children run
   with compiled bytecode, as the image ships it (``pipeline_env``).
2. warm throughput: with both processes up (and the sink's consumer group joined), N more
   events produced in one burst; from the first produce to the last row in ClickHouse.
   Both figures count towards the target: users see the warm rate day to day and the
   cold one after every restart.
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
from collections.abc import Callable
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


def _mapping_writes(team: str, count: int, late: bool | None = False) -> list[dict[str, bytes]]:
    """MSET chunks for the mappings of messages 0..count-1: the on-time ones
    (``late=False``), the late ones (``late=True``) or all (``None``). Built ahead, so
    the moment late mappings "arrive" is their write, not this bench's string building."""
    mapping = serialize(MessageMapping(team_id=team, broadcast_id="b1", tags=["bench"]))
    ids = [i for i in range(count) if late is None or is_late(i) == late]
    keys = [RedisKeys.message_mapping(team, f"{team}-{i}") for i in ids]
    return [dict.fromkeys(keys[at : at + 10_000], mapping) for at in range(0, len(keys), 10_000)]


def _write(settings: Settings, chunks: list[dict[str, bytes]]) -> None:
    from kibamail.clients import redis_client

    client = redis_client(settings)
    pipe = client.pipeline(transaction=False)
    for chunk in chunks:
        pipe.mset(chunk)
    pipe.execute()
    client.close()


def _map(settings: Settings, team: str, count: int, late: bool | None = False) -> None:
    _write(settings, _mapping_writes(team, count, late))


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


def _rows(ch: Any, team: str, at_least: int = 1) -> int:
    """Distinct events queryable (the sinks are idempotent by event_id).

    Polled every 0.1 s while the pipeline runs, so it must not load the warehouse it
    measures: ``count()`` (the team is the sort key's prefix: ~3 ms) decides until there
    may be ``at_least`` rows, then ``uniqExact(event_id)`` (~35 ms at 200k rows) counts
    them without duplicates.
    """
    parameters = {"t": team}
    rows = int(
        ch.query(
            "SELECT count() FROM raw_message_events WHERE team_id = {t:String}",
            parameters=parameters,
        ).result_rows[0][0]
    )
    if rows < at_least:
        return rows
    return int(
        ch.query(
            "SELECT uniqExact(event_id) FROM raw_message_events WHERE team_id = {t:String}",
            parameters=parameters,
        ).result_rows[0][0]
    )


# What the flow and sink processes import: compiled once before the clock starts.
PIPELINE_MODULES = (
    "pipelines.run, pipelines.correlation, pipelines.kafka_io, pipelines.sinks.clickhouse, "
    "bytewax.run, bytewax.recovery, confluent_kafka.admin, clickhouse_connect, "
    "clickhouse_connect.driver.httpclient, pyarrow.compute, redis, kibamail.clients"
)


def pipeline_env(settings: Settings, log_dir: Path) -> dict[str, str]:
    """The children's environment, with Python bytecode cached as in the image.

    The image compiles every dependency at build time (``UV_COMPILE_BYTECODE=1``). A
    shell with ``PYTHONDONTWRITEBYTECODE=1`` and no ``__pycache__`` would make each
    start-up compile ~1,400 modules (~0.5 CPU-s per process) that no deployed restart
    compiles; a bench-private cache, filled before the clock starts, avoids that.
    """
    env = {**os.environ, **settings_to_env(settings)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(log_dir / "pycache")
    env["PROMETHEUS_MULTIPROC_DIR"] = str(log_dir / "metrics")
    (log_dir / "metrics").mkdir(exist_ok=True)
    subprocess.run(
        [sys.executable, "-c", f"import {PIPELINE_MODULES}"], env=env, check=True, timeout=300
    )
    return env


def _start_pipeline(
    settings: Settings, log_dir: Path, env: dict[str, str]
) -> list[subprocess.Popen[bytes]]:
    from pipelines import recovery

    recovery.prepare(settings, ["correlation"], 1)
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
        rows = _rows(ch, team, count)
        if rows >= count:
            return time.perf_counter(), rows
        time.sleep(0.1)
    return time.perf_counter(), rows


def output_counter(settings: Settings) -> Callable[[], int]:
    """Messages the flow has written to its output topic so far (high watermarks)."""
    from confluent_kafka import Consumer, TopicPartition

    from kibamail.clients import kafka_consumer_config

    consumer = Consumer(kafka_consumer_config("bench-watermarks", settings))
    parts = [
        TopicPartition(Topic.CLICKHOUSE_MESSAGES.value, index)
        for index in range(settings.kafka.topic_partitions)
    ]

    def count() -> int:
        return sum(consumer.get_watermark_offsets(part, timeout=5)[1] for part in parts)

    return count


def per_thousand(seconds: dict[str, float], events: int) -> dict[str, float]:
    return {name: round(1000 * value / max(1, events), 4) for name, value in seconds.items()}


def throughput(
    settings: Settings, ch: Any, count: int, log_dir: Path, services: dict[str, int]
) -> dict[str, Any]:
    team = "bench-throughput"
    _map(settings, team, count, late=False)
    late_writes = _mapping_writes(team, count, late=True)
    producer_cpu = _produce(settings, _events(team, count))
    bare = bare_consume(settings, count)
    env = pipeline_env(settings, log_dir)
    output = output_counter(settings)
    base_output = output()
    services_cpu = {name: process_cpu_seconds(pid) for name, pid in services.items()}
    started = time.perf_counter()
    phases: dict[str, float] = {}

    def mark(phase: str, reached: bool = True) -> None:
        if reached and phase not in phases:
            phases[phase] = round(time.perf_counter() - started, 2)

    procs = _start_pipeline(settings, log_dir, env)
    # Wall time includes both processes' start-up and the first group join.
    first_row = None
    while first_row is None:
        mark("flow_first_output_s", output() > base_output)
        if _rows(ch, team) > 0:
            first_row = time.perf_counter()
            mark("first_row_s")
            # How far the flow was by then (the broker's high watermark, to a batch).
            phases["flow_output_at_first_row"] = output() - base_output
        else:
            time.sleep(0.05)
    _write(settings, late_writes)  # the flow is running: these arrive late
    mark("late_mappings_written_s")
    first_count = _rows(ch, team, count)
    flow_cpu_first, sink_cpu_first = (process_cpu_seconds(proc.pid) for proc in procs)
    services_first = {name: process_cpu_seconds(pid) for name, pid in services.items()}
    done, rows = _wait_rows(ch, team, count, 600)
    mark("last_row_s")
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
        # The cold figure: processes started (a deploy's restart) with the events waiting
        # in Kafka, until the last row is queryable.
        "events_per_s": round(rows / (done - started)),
        "events_per_s_after_first_row": round(steady),
        "baseline_bare_consume_events_per_s": round(count / bare),
        "ratio_to_bare_consume": round(rows / (done - started) / (count / bare), 3),
        "ratio_to_bare_consume_after_first_row": round(steady / (count / bare), 3),
        # Seconds from the start of both processes: where the cold run's time goes.
        "cold_phases": phases,
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
    late_writes = _mapping_writes(team, count, late=True)
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
    _write(settings, late_writes)
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
            result["warm_ratio_to_bare_consume"] = round(
                result["warm_events_per_s"] / result["baseline_bare_consume_events_per_s"], 3
            )
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
                    # Both: a pipeline runs warm, but every deploy restarts it cold, and the
                    # rows users wait for after a restart come at the cold rate.
                    "one_worker_ge_50k_events_per_s_warm": result["warm_events_per_s"] >= 50_000,
                    "one_worker_ge_50k_events_per_s_cold": result["events_per_s"] >= 50_000,
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
