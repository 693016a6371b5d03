"""``bench.mta`` end to end: SMTP submission -> queue -> DKIM -> delivery -> status event.

Every accepted message must come back as a status event in Kafka: ``delivered`` (the
rate counts only these), or ``deferred``/``bounced``/``failed`` as the test internet
answered (``bench.testnet``: ~3 % 4xx and ~2 % 5xx, decided per recipient, so the
expected outcome of each message is known). A message with no event by the deadline is
``unaccounted``; a message whose outcome differs from the test internet's answer is a
``mismatch``. Either makes the run incomplete.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

from kibamail.contracts import MessageStatusEvent, Topic, deserialize
from kibamail.settings import REPO_ROOT, Settings
from local_stack.services import kibamail_spec
from local_stack.stack import Stack, free_port
from testing.testnet.sink import recipient_draw

from .mta_conns import wait_port
from .mta_cpu import ThreadCpu
from .mta_load import generate
from .report import RunMeter
from .testnet import testnet_spec

ACCOUNTED = {"delivered", "deferred", "bounced", "failed", "expired", "held"}


class StatusWatcher(threading.Thread):
    """Reads status events from Kafka; notes each message's first accounted status."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        from confluent_kafka import Consumer

        from kibamail.clients import kafka_consumer_config

        self.consumer = Consumer(kafka_consumer_config(f"bench-{time.time_ns()}", settings))
        self.consumer.subscribe([Topic.MESSAGE_STATUSES.value])
        self.outcome: dict[str, tuple[str, float]] = {}
        self.stop = threading.Event()
        self.cpu_seconds = 0.0

    def run(self) -> None:
        cpu = ThreadCpu()
        while not self.stop.is_set():
            for msg in self.consumer.consume(1000, timeout=0.2):
                if msg.error() is None:
                    event = deserialize(MessageStatusEvent, msg.value() or b"")
                    status = str(event.status)
                    if status in ACCOUNTED and event.message_id not in self.outcome:
                        self.outcome[event.message_id] = (status, time.perf_counter())
        self.cpu_seconds = cpu.seconds()
        self.consumer.close()


def expected_status(rcpt: str, defer: float, bounce: float) -> str:
    """What ``bench.testnet`` answers this recipient (see ``SinkConfig.by_recipient``)."""
    draw = recipient_draw(rcpt)
    if draw < defer:
        return "deferred"
    if draw < defer + bounce:
        return "bounced"
    return "delivered"


def start_mtas(stack: Stack, settings: Settings, processes: int, split: bool) -> list[str]:
    """``processes`` MTA processes on one queue; with ``split`` (and more than one) the
    first only listens and the others only deliver. Returns their service names."""
    mta = settings.mta
    first = ["mta", "--no-delivery"] if split and processes > 1 else ["mta"]
    stack.start(kibamail_spec(settings, "mta", first, health_port=mta.metrics_port))
    names = ["mta"]
    for i in range(1, processes):
        worker = settings.model_copy(
            update={"mta": mta.model_copy(update={"metrics_port": free_port()})}
        )
        name = f"mta-worker-{i}"
        stack.start(
            kibamail_spec(
                worker, name, ["mta", "--no-listeners"], health_port=worker.mta.metrics_port
            )
        )
        names.append(name)
    return names


def e2e_run(
    stack: Stack,
    settings: Settings,
    args: argparse.Namespace,
    processes: int,
    credential: tuple[str, str],
) -> dict[str, Any]:
    mta = settings.mta
    spec = testnet_spec(mta.delivery_port, mta.dns_port, args.defer_share, args.bounce_share)
    spec.cwd = REPO_ROOT
    stack.start(spec)
    names = start_mtas(stack, settings, processes, args.split)
    wait_port(mta.submission_port)  # the metrics port answers before the listeners
    meter = RunMeter()
    # One redis-server, or a cluster's masters (--redis-cluster: their pids by name).
    redis_pids: dict[str, int] = getattr(args, "redis_pids", None) or {}
    redis_names = list(redis_pids) or ["redis"]
    for name in [*names, "testnet", "kafka"]:
        meter.add(name, stack.running_pid(name))
    for name in redis_names:
        meter.add(name, redis_pids.get(name) or stack.running_pid(name), children=False)
    meter.add_self("bench_process")
    watcher = StatusWatcher(settings)
    watcher.start()
    meter.start()
    started = time.perf_counter()
    generator = ThreadCpu()
    load = generate(
        mta.submission_port, *credential, messages=args.messages, connections=args.connections
    )
    generator_seconds = generator.seconds()
    wanted = dict(zip(load.message_ids, load.recipients, strict=True))
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline and not wanted.keys() <= watcher.outcome.keys():
        time.sleep(0.2)
    report = meter.stop()
    watcher.stop.set()
    watcher.join(10)
    for name in [*names, "testnet"]:
        stack.stop(name)
    counts: dict[str, int] = {}
    mismatches = 0
    for message_id, rcpt in wanted.items():
        status = watcher.outcome.get(message_id, ("unaccounted", 0.0))[0]
        counts[status] = counts.get(status, 0) + 1
        if status != "unaccounted":
            mismatches += status != expected_status(rcpt, args.defer_share, args.bounce_share)
    seen = [watcher.outcome[m] for m in wanted if m in watcher.outcome]
    delivered = sum(1 for status, _ in seen if status == "delivered")
    last = max((at for _, at in seen), default=0.0)
    platform = [*names, *redis_names, "kafka"]  # not the test internet, not the load generator
    platform_cpu = sum(meter.cpu.get(n, 0.0) for n in platform)
    not_attempted = args.messages - load.sent - load.failed
    complete = (
        counts.get("unaccounted", 0) == 0
        and load.failed == 0
        and load.session_errors == 0
        and not_attempted == 0
        and mismatches == 0
    )
    seconds = (last - started) if last else time.perf_counter() - started
    return {
        "mta_processes": processes,
        "roles": "split" if args.split and processes > 1 else "all",
        "submitted": args.messages,
        "accepted": load.sent,
        "refused": load.failed,
        "session_errors": load.session_errors,
        "not_attempted": not_attempted,
        "outcomes": counts,
        "unaccounted": counts.get("unaccounted", 0),
        "outcome_mismatches_vs_testnet": mismatches,
        "first_error": load.first_error,
        "complete": complete,
        # delivered-and-recorded messages per second, first submission to last event
        "delivered_msgs_per_s": round(delivered / seconds, 1) if delivered else 0.0,
        "accounted_msgs_per_s": round((len(wanted) - counts.get("unaccounted", 0)) / seconds, 1),
        "accept_p50_ms": load.percentile(0.5),
        "accept_p99_ms": load.percentile(0.99),
        **report,
        "cpu_ms_per_delivered": {
            **meter.cpu_ms_per(delivered),
            "platform_total": round(1000 * platform_cpu / delivered, 3) if delivered else None,
            # inside bench_process, shown apart: the MTA's own cost is the rest
            "load_generator_thread": round(1000 * generator_seconds / max(delivered, 1), 3),
            "kafka_watcher_thread": round(1000 * watcher.cpu_seconds / max(delivered, 1), 3),
        },
    }
