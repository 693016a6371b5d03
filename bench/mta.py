"""MTA benchmarks: SMTP acceptance vs Haraka 3.3.4, and accepted -> delivered -> event.

``python -m bench.mta [--messages N] [--connections C] [--skip-haraka]`` starts its own
stack on free loopback ports (durable Redis with AOF, the Tansu broker, the test
internet, ``kibamail mta``), then:

1. acceptance: the shared load generator (``bench.mta_load``: STARTTLS + AUTH PLAIN,
   C sessions) against ``kibamail mta --no-delivery`` (accept + XADD to the durable
   queue) and against Haraka 3.3.4 (installed with npm by ``bench.mta_haraka``; AUTH
   via auth/flat_file, accepted mail written to its outbound disk queue, delivery
   disabled), in the same run;
2. end to end: ``--workers`` MTA processes (default 2; with ``--split``, the default, the
   first only accepts and the others only deliver), the sink and loopback DNS; throughput from the
   first submission until the last ``delivered`` event is read back from Kafka.

Prints ONE JSON line (per-round figures, medians, ratio, and for the end-to-end run the
CPU seconds of every process and CPU-ms per delivered message, robust to a loaded
machine). ``--dkim rsa|ed25519`` signs every end-to-end message (production signs with
RSA; default none). Targets: acceptance ratio >= 1.0; end to end >= 300 msgs/s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from deliverability.domain_checks import set_ready
from kibamail.clients import ensure_topics, redis_client
from kibamail.contracts import MessageStatusEvent, Topic, deserialize
from kibamail.redis_keys import RedisKeys
from kibamail.settings import REPO_ROOT, Settings
from local_stack.services import kafka_spec, kibamail_spec, redis_spec
from local_stack.stack import Stack, free_port, tcp_open
from mta.credentials import create_smtp_credential
from mta.dkim_signing import generate_ed25519_key, generate_rsa_key, store_dkim_key
from testing.fixtures import build_test_settings

from .mta_cpu import CpuMeter, ThreadCpu
from .mta_load import LoadResult, generate

BENCH_TEAM = "bench-team"
TARGET_ACCEPT_RATIO = 1.0
TARGET_E2E_RATE = 300.0


def bench_policy(path: Path) -> Path:
    """The shipped policy file with the per-team rate limit lifted for the benchmark."""
    text = (REPO_ROOT / "mta" / "config" / "policies.toml").read_text()
    text = re.sub(r"per_second = \d+", "per_second = 1000000", text)
    text = re.sub(r"burst = \d+", "burst = 1000000", text)
    path.write_text(text)
    return path


def prepare_redis(settings: Settings, dkim: str = "none") -> tuple[str, str]:
    client = redis_client(settings)
    client.flushdb()
    set_ready(client, BENCH_TEAM, "sender.example", True)
    store_bench_dkim_key(client, dkim)
    credential = create_smtp_credential(client, BENCH_TEAM)
    client.close()
    return credential


def store_bench_dkim_key(client: Any, dkim: str) -> None:
    """``--dkim rsa`` signs like production (the API publishes an RSA-2048 key for every
    verified domain); ``ed25519``; ``none`` (the default, as the earlier figures)."""
    if dkim == "rsa":
        rsa_pem = generate_rsa_key()[0]
        store_dkim_key(client, BENCH_TEAM, "sender.example", "bench", "rsa-sha256", rsa_pem)
    elif dkim == "ed25519":
        seed = generate_ed25519_key()[0]
        store_dkim_key(client, BENCH_TEAM, "sender.example", "bench", "ed25519-sha256", seed)


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not tcp_open(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"port {port} did not open")
        time.sleep(0.05)


def accept_run(port: int, credential: tuple[str, str], args: argparse.Namespace) -> LoadResult:
    # Warm-up: TLS session setup, argon2 verification, imports on the server side.
    generate(port, *credential, messages=50, connections=5)
    return generate(port, *credential, messages=args.messages, connections=args.connections)


class DeliveredWatcher(threading.Thread):
    """Reads status events from Kafka and notes when each message's delivery shows up."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        from confluent_kafka import Consumer

        from kibamail.clients import kafka_consumer_config

        self.consumer = Consumer(kafka_consumer_config(f"bench-{time.time_ns()}", settings))
        self.consumer.subscribe([Topic.MESSAGE_STATUSES.value])
        self.delivered: dict[str, float] = {}
        self.stop = threading.Event()
        self.cpu_seconds = 0.0

    def run(self) -> None:
        cpu = ThreadCpu()
        while not self.stop.is_set():
            for msg in self.consumer.consume(1000, timeout=0.2):
                if msg.error() is None:
                    event = deserialize(MessageStatusEvent, msg.value() or b"")
                    if event.status == "delivered":
                        self.delivered.setdefault(event.message_id, time.perf_counter())
        self.cpu_seconds = cpu.seconds()
        self.consumer.close()


def e2e_run(stack: Stack, settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    credential = prepare_redis(settings, args.dkim)
    mta = settings.mta
    stack.start(
        kibamail_spec(
            settings,
            "testnet",
            [
                "testnet",
                "--smtp-port",
                str(mta.delivery_port),
                "--dns-port",
                str(mta.dns_port),
                "--defer-share",
                "0",
                "--bounce-share",
                "0",
            ],
            health_port=mta.delivery_port,
        )
    )
    # --split: the listener process does not deliver; the others deliver only.
    first = ["mta", "--no-delivery"] if args.split and args.workers > 1 else ["mta"]
    stack.start(kibamail_spec(settings, "mta", first, health_port=mta.metrics_port))
    extra = []
    for i in range(1, args.workers):
        # Extra delivery-only processes share the queue (the scale-out path).
        worker = settings.model_copy(
            update={"mta": mta.model_copy(update={"metrics_port": free_port()})}
        )
        name = f"mta-worker-{i}"
        stack.start(
            kibamail_spec(
                worker, name, ["mta", "--no-listeners"], health_port=worker.mta.metrics_port
            )
        )
        extra.append(name)
    wait_port(mta.submission_port)
    meter = CpuMeter()
    for name in ["mta", *extra, "testnet", "redis", "kafka"]:
        meter.add(name, stack.running_pid(name))
    meter.add("bench_process", os.getpid())
    watcher = DeliveredWatcher(settings)
    watcher.start()
    meter.start()
    started = time.perf_counter()
    generator = ThreadCpu()
    load = generate(
        mta.submission_port, *credential, messages=args.messages, connections=args.connections
    )
    generator_seconds = generator.seconds()
    wanted = set(load.message_ids)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline and not wanted <= set(watcher.delivered):
        time.sleep(0.2)
    cpu = meter.stop()
    watcher.stop.set()
    watcher.join(10)
    seen = [watcher.delivered[m] for m in wanted if m in watcher.delivered]
    last = max(seen) if seen else time.perf_counter()
    for name in ["mta", *extra, "testnet"]:
        stack.stop(name)
    return {
        "mta_processes": args.workers,
        "dkim": args.dkim,
        "roles": "split" if args.split and args.workers > 1 else "all",
        "accepted": load.sent,
        "delivered_events": len(seen),
        "msgs_per_s": round(len(seen) / (last - started), 1) if seen else 0.0,
        "accept_p50_ms": load.percentile(0.5),
        "accept_p99_ms": load.percentile(0.99),
        # CPU seconds from the first submission to the last delivered event; the bench
        # process (load generator thread + Kafka watcher) is split out so the MTA's own
        # cost per message is visible.
        "cpu_seconds": cpu,
        "cpu_ms_per_delivered": meter.per_message_ms(
            len(seen),
            {
                "load_generator_thread": generator_seconds,
                "kafka_watcher_thread": watcher.cpu_seconds,
            },
        ),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def kibamail_accept(stack: Stack, settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """One acceptance round: listeners only, every accepted message XADDed (AOF on)."""
    credential = prepare_redis(settings)
    spec = kibamail_spec(
        settings, "mta", ["mta", "--no-delivery"], health_port=settings.mta.metrics_port
    )
    stack.start(spec)
    wait_port(settings.mta.submission_port)
    try:
        load = accept_run(settings.mta.submission_port, credential, args)
        queued = redis_client(settings).xlen(RedisKeys.SUBMISSION_STREAM)
    finally:
        stack.stop("mta")
    summary: dict[str, Any] = {**load.summary(), "queued_in_redis": queued}
    if load.first_error:
        summary["first_error"] = load.first_error
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mta")
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--skip-haraka", action="store_true")
    parser.add_argument("--e2e-only", action="store_true", help="skip the acceptance rounds")
    parser.add_argument(
        "--split",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="end to end: one listener process, the rest deliver (--no-split: all do both)",
    )
    parser.add_argument(
        "--dkim",
        choices=["none", "rsa", "ed25519"],
        default="none",
        help="end to end: sign every message with this key type (production: rsa)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="interleaved acceptance rounds")
    parser.add_argument(
        "--workers", type=int, default=2, help="MTA processes in the end-to-end run"
    )
    parser.add_argument(
        "--redis-fsync",
        nargs="+",
        choices=["always", "everysec"],
        default=["always"],
        help="Redis appendfsync of the run (always: the shipped config); with several, "
        "one more acceptance round on a Redis restarted with each",
    )
    args = parser.parse_args(argv)

    state_dir = Path(tempfile.mkdtemp(prefix="kibamail-bench-mta-"))
    settings = build_test_settings(state_dir)
    settings = settings.model_copy(
        update={
            "mta": settings.mta.model_copy(
                update={"policy_file": bench_policy(state_dir / "policies.toml")}
            )
        }
    )
    stack = Stack(state_dir)
    result: dict[str, Any] = {
        "benchmark": "mta",
        "messages": args.messages,
        "connections": args.connections,
        "redis_fsync": args.redis_fsync[0],
    }
    try:
        stack.start(redis_spec(settings, durable=True, appendfsync=args.redis_fsync[0]))
        stack.start(kafka_spec(settings))
        ensure_topics(settings)

        # Interleaved rounds (Kibamail, Haraka, Kibamail, ...) so both see the same
        # machine load; the ratio compares the medians.
        kiba_rounds: list[dict[str, Any]] = []
        haraka_rounds: list[dict[str, Any]] = []
        for _ in range(0 if args.e2e_only else args.rounds):
            kiba_rounds.append(kibamail_accept(stack, settings, args))
            if not args.skip_haraka:
                from .mta_haraka import haraka_accept_run

                haraka_rounds.append(haraka_accept_run(stack, state_dir, args, accept_run))
        result["kibamail_accept"] = kiba_rounds
        if haraka_rounds:
            result["haraka_accept"] = haraka_rounds
            kiba_rate = statistics.median(r["msgs_per_s"] for r in kiba_rounds)
            haraka_rate = statistics.median(r.get("msgs_per_s", 0.0) for r in haraka_rounds)
            if haraka_rate:
                ratio = kiba_rate / haraka_rate
                result["accept_msgs_per_s"] = {
                    "kibamail": round(kiba_rate, 1),
                    "haraka": round(haraka_rate, 1),
                }
                result["accept_ratio_vs_haraka"] = round(ratio, 3)
                result["accept_target_met"] = ratio >= TARGET_ACCEPT_RATIO

        e2e = e2e_run(stack, settings, args)
        result["end_to_end"] = e2e
        result["e2e_target_met"] = e2e["msgs_per_s"] >= TARGET_E2E_RATE
        if len(args.redis_fsync) > 1:  # the same acceptance round on each setting
            by_fsync: dict[str, Any] = {}
            for fsync in args.redis_fsync:
                stack.stop("redis")
                stack.start(redis_spec(settings, durable=True, appendfsync=fsync))
                by_fsync[fsync] = kibamail_accept(stack, settings, args)
            result["accept_by_redis_fsync"] = by_fsync
    finally:
        stack.stop_all(order=["mta", "testnet", "haraka", "kafka", "redis"])  # + workers
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
