"""``kibamail pipelines``: every dataflow and the ClickHouse sink, supervised, with /metrics.

The parent starts one child process per dataflow (Bytewax ``cli_main`` with
``settings.pipelines.workers`` workers and a recovery store), ``workers`` sink
consumers (each assigned its share of the partitions, see ``sink_member``) and the
reputation throttle consumer, restarts any that dies (a dataflow resumes from its last
snapshot, a sink from its last committed offsets) and serves all their metrics
on ``settings.pipelines.metrics_port``. ``python -m pipelines.run flow <name>``,
``... sink [<local index>]`` and ``... throttle`` run one child in the foreground.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from kibamail.settings import Settings, get_settings

log = logging.getLogger("pipelines.run")

MARKER_REFRESH_SECONDS = 600.0
# The hot loops allocate a dict or a message per event, nearly none of them in cycles:
# with CPython's default (a young collection every 700 allocations, scanning long-lived
# objects regularly) the collector cost the sink ~15% and the dataflow ~4% of their CPU.
GC_THRESHOLDS = (100_000, 50, 100)


def tune_gc() -> None:
    """Freeze what start-up built (never collected again) and collect young objects rarely."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def flow_builders() -> dict[str, Callable[[Settings], Any]]:
    from pipelines import correlation, enrichment, scoring

    return {
        "correlation": correlation.build_flow,
        "enrichment": enrichment.build_flow,
        "scoring": scoring.build_flow,
    }


def cluster_addresses(settings: Settings, name: str) -> list[str]:
    """This flow's Bytewax cluster: ``pipelines.addresses`` with each port shifted by the
    flow's index (every flow is its own cluster, so one address list serves them all)."""
    shift = list(flow_builders()).index(name)
    addresses = []
    for address in settings.pipelines.addresses:
        host, port = address.rsplit(":", 1)
        addresses.append(f"{host}:{int(port) + shift}")
    return addresses


def run_flow(settings: Settings, name: str) -> None:
    """One dataflow in this process (blocks); recovery dir prepared by the parent.

    With ``pipelines.addresses`` set, this process is ``pipelines.process_id`` of a
    Bytewax cluster (same list on every host); Kafka partitions are spread over the
    processes (see kafka_io.LeanKafkaSource) and state is exchanged between them.
    """
    from bytewax.recovery import RecoveryConfig
    from bytewax.run import cli_main

    flow = flow_builders()[name](settings)
    tune_gc()
    cluster: dict[str, Any] = {}
    if settings.pipelines.addresses:
        cluster = {
            "process_id": settings.pipelines.process_id,
            "addresses": cluster_addresses(settings, name),
        }
    cli_main(
        flow,
        workers_per_process=max(1, settings.pipelines.workers),
        epoch_interval=timedelta(seconds=settings.pipelines.tuning.epoch_seconds),
        recovery_config=RecoveryConfig(settings.pipelines.recovery_dir / name),
        **cluster,
    )


def run_throttle(settings: Settings) -> None:
    from pipelines import throttle

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    throttle.run(settings, stop)


def sink_member(settings: Settings, local: int) -> tuple[int, int]:
    """(index, count) of this process's ``local``-th sink among every sink of the cluster:
    ``workers`` sinks per process, processes ordered by ``pipelines.process_id`` (the
    same id the Bytewax cluster uses, so every deployment that runs a cluster agrees)."""
    workers = max(1, settings.pipelines.workers)
    processes = max(1, len(settings.pipelines.addresses))
    if not 0 <= local < workers or not 0 <= settings.pipelines.process_id < processes:
        raise ValueError(
            f"sink {local} of process {settings.pipelines.process_id}: "
            f"outside {workers} sinks x {processes} processes"
        )
    return settings.pipelines.process_id * workers + local, processes * workers


def run_sink(settings: Settings, local: int = 0) -> None:
    from pipelines.sinks.clickhouse import ClickHouseSink

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sink = ClickHouseSink(settings, member=sink_member(settings, local))
    tune_gc()
    sink.run(stop)


class Child:
    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.next_start = 0.0
        self.started = 0.0

    def start(self) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.argv, env=self.env)
        log.info("started %s (pid %d)", self.name, self.proc.pid)


def children(settings: Settings, env: dict[str, str]) -> list[Child]:
    python = [sys.executable, "-m", "pipelines.run"]
    kids = [Child(f"flow-{name}", [*python, "flow", name], env) for name in flow_builders()]
    kids += [
        Child(f"sink-{index}", [*python, "sink", str(index)], env)
        for index in range(max(1, settings.pipelines.workers))
    ]
    kids.append(Child("throttle", [*python, "throttle"], env))
    return kids


def run(settings: Settings) -> None:
    """Supervise every pipeline process until SIGTERM/SIGINT; serve /metrics meanwhile."""
    from prometheus_client import start_http_server

    from pipelines import recovery
    from pipelines.metrics import clear_multiprocess_dir, mark_process_dead

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    metrics_dir = settings.stack.state_dir / "pipelines-metrics"
    clear_multiprocess_dir(str(metrics_dir))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    from kibamail.clients import ensure_topics

    ensure_topics(settings)
    processes = max(1, len(settings.pipelines.addresses))
    if settings.pipelines.process_id == 0:
        recovery.prepare(settings, list(flow_builders()), settings.pipelines.workers * processes)
    else:  # a cluster shares one recovery dir (shared volume): process 0 prepares it
        recovery.wait_prepared(settings, list(flow_builders()))

    from prometheus_client import CollectorRegistry, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    server, _thread = start_http_server(
        settings.pipelines.metrics_port,
        addr=settings.pipelines.metrics_host,
        registry=registry,
    )
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    kids = children(settings, dict(os.environ))
    for kid in kids:
        kid.start()
    refreshed = time.monotonic()
    try:
        while not stopping.wait(0.5):
            for kid in kids:
                supervise(kid)
            if time.monotonic() - refreshed > MARKER_REFRESH_SECONDS:
                recovery.refresh_marker(settings)
                refreshed = time.monotonic()
    finally:
        for kid in kids:
            if kid.proc and kid.proc.poll() is None:
                kid.proc.terminate()
        for kid in kids:
            if kid.proc:
                try:
                    kid.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    kid.proc.kill()
                    kid.proc.wait()
                mark_process_dead(kid.proc.pid)
        server.shutdown()


def supervise(kid: Child) -> None:
    """Restart a child that died, with backoff (it resumes from its recovery point)."""
    from pipelines.metrics import ERRORS, mark_process_dead

    if kid.proc is None or kid.proc.poll() is None:
        return
    now = time.monotonic()
    if kid.next_start == 0.0:
        log.error("%s exited with %s; restarting", kid.name, kid.proc.returncode)
        ERRORS.labels(kid.name, "process_exit").inc()
        mark_process_dead(kid.proc.pid)
        if now - kid.started > 60:
            kid.restarts = 0
        kid.next_start = now + min(30.0, 0.5 * 2**kid.restarts)
    if now >= kid.next_start:
        kid.restarts += 1
        kid.next_start = 0.0
        kid.start()


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = get_settings()
    if argv[:1] == ["flow"] and len(argv) == 2:
        run_flow(settings, argv[1])
    elif argv[:1] == ["sink"] and len(argv) <= 2 and all(a.isdigit() for a in argv[1:]):
        run_sink(settings, int(argv[1]) if len(argv) == 2 else 0)
    elif argv == ["throttle"]:
        run_throttle(settings)
    elif not argv:
        run(settings)
    else:
        sys.exit("usage: python -m pipelines.run [flow <name> | sink [<local index>] | throttle]")


if __name__ == "__main__":
    main(sys.argv[1:])
