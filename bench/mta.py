"""MTA benchmarks: SMTP acceptance vs Haraka 3.3.4, accepted -> delivered -> event, and
many idle-then-active sessions.

``python -m bench.mta [--messages N] [--connections C] [--processes 1 2 3] [--skip-haraka]``
starts its own stack on free loopback ports (durable Redis, appendfsync always as shipped;
the Tansu broker; the test internet; ``kibamail mta`` with the shipped policy chain, only the
per-team rate limit lifted), then, by default (``--mode throughput``):

1. acceptance: the shared load generator (``bench.mta_load``: STARTTLS + AUTH PLAIN,
   C sessions) against ``kibamail mta --no-delivery`` (accept + XADD to the durable
   queue) and against Haraka 3.3.4 (``bench.mta_haraka``: AUTH via auth/flat_file, mail
   written to its outbound disk queue, delivery disabled), interleaved rounds, same run;
2. end to end (``bench.mta_e2e``) for each ``--processes`` count: RSA-2048 DKIM signing
   (as production; ``--dkim ed25519|none`` are labelled faster modes), a test internet that
   defers ~3 % and bounces ~2 % by recipient; the rate counts only messages whose
   ``delivered`` status event was read back from Kafka, and every other accepted message
   must show its deferral or bounce, or the run is ``"complete": false``.

``--mode connections`` (``bench.mta_conns``): ``--sessions`` (2,000) idle-then-active
sessions on one MTA process; peak RSS and refusals.

Prints ONE JSON line with ``complete``, rates, the Haraka baseline and ratio, CPU seconds
and peak RSS per process, CPU-ms per delivered message, the load average during the run
and ``mode``. Targets: acceptance >= 1.5x Haraka, acceptance p99 < 100 ms, end to end
>= 300 msgs/s with <= 3 platform CPU-ms per delivered message; connections: RSS <= 400 MB.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from deliverability.domain_checks import set_ready
from kibamail.clients import ensure_topics, redis_client
from kibamail.redis_keys import RedisKeys
from kibamail.settings import REPO_ROOT, Settings
from local_stack.services import kafka_spec, kibamail_spec, redis_spec
from local_stack.stack import Stack, tcp_open
from mta.credentials import create_smtp_credential
from mta.dkim_signing import generate_ed25519_key, generate_rsa_key, store_dkim_key
from testing.fixtures import build_test_settings

from .mta_load import LoadResult, generate
from .report import RunMeter, finish, load_summary
from .testnet import BOUNCE_SHARE, DEFER_SHARE

BENCH_TEAM = "bench-team"
TARGET_ACCEPT_RATIO = 1.5
TARGET_ACCEPT_P99_MS = 100.0
TARGET_E2E_RATE = 300.0
TARGET_CPU_MS_PER_DELIVERED = 3.0


def bench_policy(path: Path) -> Path:
    """The shipped policy file with the per-team rate limit lifted for the benchmark."""
    text = (REPO_ROOT / "mta" / "config" / "policies.toml").read_text()
    text = re.sub(r"per_second = \d+", "per_second = 1000000", text)
    text = re.sub(r"burst = \d+", "burst = 1000000", text)
    path.write_text(text)
    return path


def prepare_redis(settings: Settings, dkim: str = "rsa") -> tuple[str, str]:
    client = redis_client(settings)
    client.flushdb()
    set_ready(client, BENCH_TEAM, "sender.example", True)
    store_bench_dkim_key(client, dkim)
    credential = create_smtp_credential(client, BENCH_TEAM)
    client.close()
    return credential


def store_bench_dkim_key(client: Any, dkim: str) -> None:
    """``rsa`` (the default) signs like production (the API publishes an RSA-2048 key for
    every verified domain); ``ed25519`` and ``none`` are faster, labelled modes."""
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


WARMUP = 50


def accept_run(
    port: int, credential: tuple[str, str], args: argparse.Namespace, meter: RunMeter
) -> LoadResult:
    # Warm-up: TLS session setup, argon2 verification, imports on the server side.
    generate(port, *credential, messages=WARMUP, connections=5)
    meter.start()
    return generate(port, *credential, messages=args.messages, connections=args.connections)


def accounted(summary: dict[str, Any], queued: int, messages: int) -> bool:
    """Every message of the round (and the 50 of the warm-up) accepted and queued."""
    return (
        summary["failed"] == 0
        and summary["session_errors"] == 0
        and summary["sent"] == messages
        and queued == messages + WARMUP
    )


def kibamail_accept(stack: Stack, settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """One acceptance round: listeners only, every accepted message XADDed (AOF on)."""
    credential = prepare_redis(settings)
    spec = kibamail_spec(
        settings, "mta", ["mta", "--no-delivery"], health_port=settings.mta.metrics_port
    )
    stack.start(spec)
    wait_port(settings.mta.submission_port)
    meter = RunMeter()
    meter.add("mta", stack.running_pid("mta"))
    meter.add("redis", stack.running_pid("redis"), children=False)
    meter.add_self("load_generator")
    try:
        load = accept_run(settings.mta.submission_port, credential, args, meter)
        client = redis_client(settings)
        queued = sum(int(client.xlen(key)) for key in RedisKeys.submission_streams())
        report = meter.stop()
    finally:
        stack.stop("mta")
    summary: dict[str, Any] = {**load.summary(), "queued_in_redis": queued}
    summary["complete"] = accounted(summary, queued, args.messages)
    summary.update(report, cpu_ms_per_accepted=meter.cpu_ms_per(load.sent))
    if load.first_error:
        summary["first_error"] = load.first_error
    return summary


def acceptance(stack: Stack, settings: Settings, state_dir: Path, args: Any) -> dict[str, Any]:
    """Interleaved rounds (Kibamail, Haraka, Kibamail, ...) so both see the same machine
    load; the ratio compares the medians."""
    kiba_rounds: list[dict[str, Any]] = []
    haraka_rounds: list[dict[str, Any]] = []
    for _ in range(args.rounds):
        kiba_rounds.append(kibamail_accept(stack, settings, args))
        if not args.skip_haraka:
            from .mta_haraka import haraka_accept_run

            haraka_rounds.append(haraka_accept_run(stack, state_dir, args, accept_run))
    out: dict[str, Any] = {"kibamail_accept": kiba_rounds}
    kiba_rate = statistics.median(r["msgs_per_s"] for r in kiba_rounds)
    out["accept_msgs_per_s"] = round(kiba_rate, 1)
    out["accept_p99_ms"] = statistics.median(r["p99_ms"] for r in kiba_rounds)
    out["accept_complete"] = all(r["complete"] for r in kiba_rounds)
    if haraka_rounds:
        out["haraka_accept"] = haraka_rounds
        haraka_rate = statistics.median(r.get("msgs_per_s", 0.0) for r in haraka_rounds)
        out["haraka_accept_msgs_per_s"] = round(haraka_rate, 1)
        out["accept_ratio_vs_haraka"] = round(kiba_rate / haraka_rate, 3) if haraka_rate else None
        out["haraka_complete"] = all(r.get("complete", False) for r in haraka_rounds)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mta")
    parser.add_argument("--mode", choices=["throughput", "connections"], default="throughput")
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
        choices=["rsa", "ed25519", "none"],
        default="rsa",
        help="end to end: key type every message is signed with (production: rsa, RSA-2048)",
    )
    parser.add_argument("--defer-share", type=float, default=DEFER_SHARE)
    parser.add_argument("--bounce-share", type=float, default=BOUNCE_SHARE)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved acceptance rounds")
    parser.add_argument(
        "--processes",
        type=int,
        nargs="+",
        default=[2],
        help="MTA processes of the end-to-end run; several: one run per count",
    )
    parser.add_argument(
        "--redis-fsync",
        choices=["always", "everysec"],
        default="always",
        help="Redis appendfsync (always: the shipped, durable config)",
    )
    parser.add_argument(
        "--redis-cluster",
        action="store_true",
        help="a 3-master Redis Cluster on loopback (testing.redis_cluster) instead of one node",
    )
    parser.add_argument("--sessions", type=int, default=2000, help="connections mode")
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="connections mode")
    args = parser.parse_args(argv)
    print(json.dumps(run(args)))
    return 0


def mode_label(args: argparse.Namespace) -> str:
    if args.mode == "connections":
        return f"connections:{args.sessions}"
    parts = [f"dkim={args.dkim}", f"redis_fsync={args.redis_fsync}"]
    if getattr(args, "redis_cluster", False):
        parts.append("redis=cluster(3 masters)")
    parts.append(f"testnet_defer={args.defer_share},bounce={args.bounce_share}")
    production = (
        args.dkim == "rsa"
        and args.redis_fsync == "always"
        and args.defer_share == DEFER_SHARE
        and args.bounce_share == BOUNCE_SHARE
    )
    return ("production" if production else "custom") + " (" + "; ".join(parts) + ")"


def run(args: argparse.Namespace) -> dict[str, Any]:
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
    result: dict[str, Any] = {"benchmark": "mta", "mode": mode_label(args)}
    loads: list[float] = []
    cluster = None
    try:
        if args.redis_cluster:
            from testing.redis_cluster import start_cluster

            cluster = start_cluster(state_dir / "redis-cluster")  # appendfsync always
            settings = settings.model_copy(update={"redis": cluster.settings})
            args.redis_pids = {f"redis{i}": p.pid for i, p in enumerate(cluster.processes)}
        else:
            stack.start(redis_spec(settings, durable=True, appendfsync=args.redis_fsync))
        stack.start(kafka_spec(settings))
        ensure_topics(settings)
        if args.mode == "connections":
            from .mta_conns import connections_run

            conns = connections_run(stack, settings, args, prepare_redis(settings, "none"))
            result.update(conns)
            return finish(result, conns["complete"], {"rss_le_400mb": conns["rss_within_target"]})
        result.update(messages=args.messages, connections=args.connections)
        complete = True
        targets: dict[str, bool] = {}
        if not args.e2e_only:
            accept = acceptance(stack, settings, state_dir, args)
            result.update(accept)
            complete = complete and accept["accept_complete"]
            targets["accept_p99_lt_100ms"] = accept["accept_p99_ms"] < TARGET_ACCEPT_P99_MS
            if "accept_ratio_vs_haraka" in accept:
                complete = complete and accept["haraka_complete"]
                ratio = accept["accept_ratio_vs_haraka"] or 0.0
                targets["accept_ge_1_5x_haraka"] = ratio >= TARGET_ACCEPT_RATIO
        from .mta_e2e import e2e_run

        runs = []
        for processes in args.processes:
            credential = prepare_redis(settings, args.dkim)
            runs.append(e2e_run(stack, settings, args, processes, credential))
        result["end_to_end"] = runs
        # Per-process delivered rate against the first --processes run's (1.0 = linear).
        base = runs[0]["delivered_msgs_per_s"] / runs[0]["mta_processes"]
        result["scaling_efficiency"] = {
            str(r["mta_processes"]): round(r["delivered_msgs_per_s"] / r["mta_processes"] / base, 3)
            for r in runs
            if base
        }
        complete = complete and all(r["complete"] for r in runs)
        best = max(runs, key=lambda r: r["delivered_msgs_per_s"])
        result["e2e_delivered_msgs_per_s"] = best["delivered_msgs_per_s"]
        result["e2e_platform_cpu_ms_per_delivered"] = best["cpu_ms_per_delivered"].get(
            "platform_total"
        )
        targets["e2e_ge_300_per_s"] = best["delivered_msgs_per_s"] >= TARGET_E2E_RATE
        platform_ms = best["cpu_ms_per_delivered"].get("platform_total")
        targets["e2e_cpu_le_3ms"] = (
            platform_ms is not None and platform_ms <= TARGET_CPU_MS_PER_DELIVERED
        )
        targets["e2e_accept_p99_lt_100ms"] = best["accept_p99_ms"] < TARGET_ACCEPT_P99_MS
        loads = [r["load_average"]["mean_1m"] for r in runs]
        result["load_average"] = load_summary(loads)
        return finish(result, complete, targets)
    finally:
        stack.stop_all(order=["mta", "testnet", "haraka", "kafka", "redis"])  # + workers
        if cluster is not None:
            from testing.redis_cluster import stop_cluster

            stop_cluster(cluster)


if __name__ == "__main__":
    sys.exit(main())
