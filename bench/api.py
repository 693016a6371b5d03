"""API benchmarks: POST /v1/emails vs the same server stack serving a trivial endpoint,
paced tail latency, the tracking pixel at broker acknowledgement, broadcast fan-out.

``python -m bench.api [--requests N] [--connections C] [--workers W] [--contacts K]
[--paced-seconds S] [--quick] [--redis-fsync always|everysec]`` starts its own Redis (AOF,
appendfsync always as shipped), Tansu broker and MariaDB-free SQLite database on free
loopback ports, then measures in one run, on the production server stack (uvicorn with
``--workers`` processes, uvloop, httptools, the app's middlewares):

1. ``POST /v1/emails`` closed loop (realistic HTML+text payload, API-key auth, domain and
   suppression checks, rendering with tracking, XADD to the MTA stream); the baseline is
   the SAME stack (uvicorn setup and middlewares) answering 202 from a trivial raw ASGI
   handler for the same requests. Rates count 2xx answers only;
2. the send paced at 1,000 req/s for ``--paced-seconds`` (60): p50/p99/p99.9 from each
   request's due time (open loop: no coordinated omission), timeouts included; with the
   evidence of stalls (GC pauses and event-loop lag inside the workers, Redis' latency
   monitor: ``bench.api_probe``);
3. the open pixel, counted when its event is read back from Kafka (outbox publisher on);
4. broadcast fan-out to K contacts, done when every contact's message is queued.

Every phase reports 2xx/errors/timeouts/unaccounted, CPU seconds and peak RSS per
process and the load average during it. Prints ONE JSON line. Targets: >= 1,500 sends/s;
paced p99 < 50 ms and p99.9 < 200 ms; pixel >= 3,000/s; 100k-contact fan-out <= 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from .api_load import LoadResult, build_request, run_load
from .api_phases import fanout_to_queue, pixel_at_broker, prepare_fanout
from .api_probe import collect, redis_latency, wrap
from .report import RunMeter, finish, load_summary

TARGETS = {
    "emails_per_s": 1500,
    "p99_ms_at_1000": 50,
    "p99_9_ms_at_1000": 200,
    "pixel_per_s": 3000,
    "fanout_s": 10,
}

HTML = (
    "<html><body><h1>Your receipt</h1>"
    + "".join(
        f'<p>Item {i}: <a href="https://shop.example/p/{i}?ref=mail">view</a></p>' for i in range(5)
    )
    + "<p>"
    + "Thanks for shopping with us. " * 60
    + "</p></body></html>"
)


def _payload(domain: str, index: int) -> bytes:
    return json.dumps(
        {
            "from": f"Acme <receipts@{domain}>",
            "to": [f"customer{index}@example.org"],
            "subject": f"Your receipt #{index}",
            "html": HTML,
            "text": "Thanks for shopping with us. " * 30,
            "tags": ["receipt"],
            "metadata": {"order": str(index)},
        }
    ).encode()


def serve(kind: str) -> None:
    """Server side (subprocess): the real app or the bare baseline, same uvicorn setup."""
    import uvicorn

    from kibamail.settings import get_settings

    settings = get_settings()
    uvicorn.run(
        f"bench.api:{kind}_app",
        factory=True,
        host="127.0.0.1",
        port=settings.api.port,
        workers=settings.api.workers,
        loop="uvloop",
        http="httptools",
        backlog=4096,  # as api.main.run (production)
        log_level="warning",
        access_log=False,
        proxy_headers=True,
    )


def real_app() -> Any:
    from api.app import create_app

    return wrap(create_app())  # the bench settings lift the per-key rate limit


def bare_app() -> Any:
    """The baseline: the real app's middleware stack around a trivial raw ASGI handler
    (the real send is served by the raw ASGI fast path, so no FastAPI routing either)."""
    from api.middleware import BodyLimitMiddleware, MetricsAuthMiddleware, MetricsMiddleware
    from kibamail.settings import get_settings

    settings = get_settings()

    async def trivial(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        more = True
        while more:  # read the body, as the send does
            more = (await receive()).get("more_body", False)
        status = 202 if scope["path"] == "/v1/emails" else 200
        body = b'{"id":"%s@bench"}' % uuid.uuid4().hex.encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    app: Any = BodyLimitMiddleware(trivial, max_bytes=settings.api.max_request_bytes)
    return MetricsAuthMiddleware(MetricsMiddleware(app), token=settings.api.metrics_token)


def _wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not become healthy")


def _start_server(kind: str, env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "bench.api", "--serve", kind], env=env)
    _wait_healthy(port, proc)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def measured(
    pids: dict[str, int],
    port: int,
    requests: list[bytes],
    connections: int,
    rate: float | None = None,
) -> dict[str, Any]:
    """One load run with CPU/RSS/load of every process; `pids` by name (redis without
    children: its AOF-rewrite fork comes and goes)."""
    meter = RunMeter()
    for name, pid in pids.items():
        meter.add(name, pid, children=name != "redis")
    meter.add_self("load_generator")
    meter.start()
    load = asyncio.run(run_load(port, requests, connections, rate))
    report = meter.stop()
    unanswered = len(requests) - load.requests
    return {
        **load.summary(),
        "unaccounted": unanswered,
        "complete": unanswered == 0 and load.ok == len(requests),
        "_load": load,
        **report,
        "cpu_ms_per_ok": meter.cpu_ms_per(load.ok),
    }


def paced_with_evidence(
    args: argparse.Namespace,
    settings: Any,
    env: dict[str, str],
    port: int,
    redis_pid: int,
    warmup: list[bytes],
    paced_posts: list[bytes],
) -> dict[str, Any]:
    """The paced run on a fresh server whose workers record GC pauses and event-loop lag
    (``bench.api_probe``), with Redis' latency monitor on: where the tail comes from."""
    from kibamail.clients import redis_client

    probe_dir = Path(tempfile.mkdtemp(prefix="kibamail-bench-api-probe-"))
    redis = redis_client(settings)
    redis.config_set("latency-monitor-threshold", 5)
    redis.execute_command("LATENCY", "RESET")
    server = _start_server("real", {**env, "KIBAMAIL_BENCH_PROBE_DIR": str(probe_dir)}, port)
    try:
        asyncio.run(run_load(port, warmup, args.connections))
        pids = {"api_server": server.pid, "redis": redis_pid}
        paced = measured(pids, port, paced_posts, 256, rate=args.paced_rate)
    finally:
        _stop(server)
    paced["stall_evidence"] = {
        "api_workers": collect(probe_dir),
        "redis_latency_monitor_ms": redis_latency(redis),
    }
    redis.close()
    return paced


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", choices=["real", "bare"])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)  # "on 2 cores"
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--paced-rate", type=float, default=1000.0)
    parser.add_argument("--paced-seconds", type=float, default=60.0)
    parser.add_argument("--api-workers", type=int, default=2, help="fan-out job workers")
    parser.add_argument("--quick", action="store_true", help="smoke run: small counts, 5 s paced")
    parser.add_argument("--redis-fsync", choices=["always", "everysec"], default="always")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if args.quick:
        args.requests, args.contacts, args.paced_seconds = 2000, 2000, 5.0
    print(json.dumps(run_bench(args)))


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    from api.bootstrap import create_team_with_key
    from api.services.rendering import OPEN_PURPOSE
    from api.services.security import Signer
    from kibamail.clients import ensure_topics
    from kibamail.settings import settings_to_env
    from local_stack.services import kafka_spec, redis_spec
    from local_stack.stack import Stack
    from testing.fixtures import build_test_settings

    state_dir = Path(tempfile.mkdtemp(prefix="kibamail-bench-api-"))
    settings = build_test_settings(state_dir)
    api = settings.api.model_copy(
        update={
            "workers": args.workers,
            "rate_limit_per_second": 10**9,
            "rate_limit_burst": 10**9,
        }
    )
    # The per-team send budget (429 past 100/s by default) would cap the figure too.
    sending = settings.sending.model_copy(update={"per_second": 10**9, "burst": 10**9})
    settings = settings.model_copy(update={"api": api, "sending": sending})
    stack = Stack(state_dir)
    env = {**os.environ, **settings_to_env(settings)}
    port = settings.api.port
    try:
        redis_pid = stack.start(redis_spec(settings, durable=True, appendfsync=args.redis_fsync))
        kafka_pid = stack.start(kafka_spec(settings))
        ensure_topics(settings)
        domain = "bench.example.com"
        team_id, key = create_team_with_key(
            settings, email="bench@example.com", team_name="bench", domain=domain
        )
        auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        posts = [
            build_request("POST", "/v1/emails", port, _payload(domain, i), auth)
            for i in range(args.requests)
        ]
        warmup = posts[:500]
        paced_count = int(args.paced_rate * args.paced_seconds)
        paced_posts = [posts[i % len(posts)] for i in range(paced_count)]
        signer = Signer(settings.api.secret_key)
        open_ids = [f"m{i}@{domain}" for i in range(args.requests)]
        pixels = [
            build_request("GET", f"/t/o/{signer.dumps(OPEN_PURPOSE, [m, team_id])}", port)
            for m in open_ids
        ]
        warm_pixels = [
            build_request("GET", f"/t/o/{signer.dumps(OPEN_PURPOSE, [f'w{i}', team_id])}", port)
            for i in range(500)
        ]

        real = _start_server("real", env, port)
        try:
            pids = {"api_server": real.pid, "redis": redis_pid}
            asyncio.run(run_load(port, warmup, args.connections))
            emails = measured(pids, port, posts, args.connections)
        finally:
            _stop(real)
        paced = paced_with_evidence(args, settings, env, port, redis_pid, warmup, paced_posts)
        real = _start_server("real", env, port)
        try:
            pids = {"api_server": real.pid, "redis": redis_pid}
            asyncio.run(run_load(port, warm_pixels, args.connections))
            pixel = pixel_at_broker(
                stack, settings, {**pids, "kafka": kafka_pid}, port, pixels, open_ids,
                args.connections, timeout=120,
            )  # fmt: skip
        finally:
            _stop(real)
        bare = _start_server("bare", env, port)
        try:
            asyncio.run(run_load(port, warmup, args.connections))
            baseline = measured({"api_server": bare.pid}, port, posts, args.connections)
        finally:
            _stop(bare)
        enqueue = prepare_fanout(settings, team_id, domain, args.contacts)
        fanout = fanout_to_queue(
            stack, settings, args.api_workers, enqueue, args.contacts, redis_pid, timeout=600
        )
    finally:
        stack.stop_all(order=["kafka", "redis"])
    return summarize(args, emails, baseline, paced, pixel, fanout)


def summarize(
    args: argparse.Namespace,
    emails: dict[str, Any],
    baseline: dict[str, Any],
    paced: dict[str, Any],
    pixel: dict[str, Any],
    fanout: dict[str, Any],
) -> dict[str, Any]:
    paced_load: LoadResult = paced.pop("_load")
    emails.pop("_load")
    baseline.pop("_load")
    paced["p99_ms_after_first_2_s"] = round(paced_load.percentile_due_after(0.99, 2.0) * 1000, 2)
    ratio = emails["ok_per_s"] / baseline["ok_per_s"] if baseline["ok_per_s"] else 0.0
    result: dict[str, Any] = {
        "bench": "api",
        "mode": f"production (redis_fsync={args.redis_fsync})"
        if args.redis_fsync == "always"
        else f"custom (redis_fsync={args.redis_fsync})",
        "quick": args.quick,
        "cores": os.cpu_count(),
        "uvicorn_workers": args.workers,
        "emails_ok_per_s": emails["ok_per_s"],
        "emails": emails,
        "baseline": "same uvicorn stack and middlewares, trivial raw ASGI 202 handler",
        "baseline_ok_per_s": baseline["ok_per_s"],
        "baseline_run": baseline,
        "ratio_to_baseline": round(ratio, 3),
        "paced": {"rate": args.paced_rate, "seconds": args.paced_seconds, **paced},
        "pixel_acked_per_s": pixel["acked_per_s"],
        "pixel": pixel,
        "fanout": fanout,
        "targets": TARGETS,
    }
    complete = all(x["complete"] for x in (emails, baseline, paced, pixel, fanout))
    loads = [x["load_average"]["mean_1m"] for x in (emails, baseline, paced, pixel, fanout)]
    result["load_average"] = load_summary(loads)
    full_paced = args.paced_seconds >= 60
    return finish(
        result,
        complete,
        {
            "emails_ge_1500_per_s": emails["ok_per_s"] >= TARGETS["emails_per_s"],
            "paced_p99_lt_50ms": full_paced and paced["p99_ms"] < TARGETS["p99_ms_at_1000"],
            "paced_p99_9_lt_200ms": full_paced and paced["p99_9_ms"] < TARGETS["p99_9_ms_at_1000"],
            "pixel_ge_3000_per_s": pixel["acked_per_s"] >= TARGETS["pixel_per_s"],
            "fanout_le_10_s": args.contacts >= 100_000
            and fanout["seconds_to_all_queued"] <= TARGETS["fanout_s"],
        },
    )


if __name__ == "__main__":
    main()
