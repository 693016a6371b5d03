"""API benchmarks: POST /v1/emails vs a bare FastAPI endpoint, tracking pixel, fan-out.

``python -m bench.api [--requests N] [--connections C] [--workers W] [--contacts K]
[--redis-fsync always everysec]`` starts its own Redis (AOF on, the MTA queue; appendfsync
always unless told) and Tansu broker on free loopback ports,
then measures, in the same run and on the same uvicorn setup:

1. ``POST /v1/emails`` (realistic HTML+text payload, API-key auth, domain and
   suppression checks, rendering with tracking, XADD to the MTA stream) vs a bare
   FastAPI endpoint taking the same JSON body -> req/s of each and the ratio;
2. p50/p99 latency of ``POST /v1/emails`` paced at 1,000 req/s (open loop: latency from
   each request's due time);
3. the open-tracking pixel (signed token, event XADDed to the API outbox) in req/s;
4. broadcast fan-out: K contacts turned into queued SendBroadcastToContact jobs.

Each figure comes with the server's CPU-seconds per request (uvicorn supervisor and
workers, from /proc: robust to other load on the machine), the load generator's own
CPU-seconds, and the 1-minute load average when it finished.
Prints ONE JSON line. Targets: >= 1,500 req/s; p99 < 50 ms at 1,000 req/s;
pixel >= 3,000 req/s; 100k-contact fan-out <= 10 s.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .api_load import LoadResult, build_request, load_average, run_load
from .cpu import process_tree_cpu_seconds

TARGETS = {"emails_per_s": 1500, "p99_ms_at_1000": 50, "pixel_per_s": 3000, "fanout_s": 10}

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
        log_level="warning",
        access_log=False,
    )


def real_app() -> Any:
    from api.app import create_app

    return create_app()  # the bench settings lift the per-key rate limit


def bare_app() -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/emails")
    async def send(body: dict[str, Any]) -> dict[str, str]:
        return {"id": f"{uuid.uuid4()}@bench"}

    return app


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


def _fanout(settings: Any, team_id: str, domain: str, contacts: int) -> dict[str, Any]:
    from sqlalchemy import insert

    from api.db import make_engine, make_sessionmaker, new_id, utcnow
    from api.jobs.broadcast_fanout import BroadcastJobs, progress_key
    from api.jobs.queue import JOB_STREAM
    from api.models import Broadcast, Contact, ContactList
    from api.services.security import Signer
    from kibamail.clients import redis_client

    engine = make_engine(settings.database.url)
    sessions = make_sessionmaker(engine)
    with sessions.begin() as db:
        contact_list = ContactList(team_id=team_id, name="bench")
        db.add(contact_list)
        db.flush()
        now = utcnow()
        rows = [
            {
                "id": new_id(),
                "team_id": team_id,
                "list_id": contact_list.id,
                "email": f"c{i}@example.org",
                "first_name": "",
                "last_name": "",
                "fields": {},
                "status": "subscribed",
                "created_at": now,
            }
            for i in range(contacts)
        ]
        db.execute(insert(Contact), rows)
        broadcast = Broadcast(
            team_id=team_id,
            name="bench",
            list_id=contact_list.id,
            from_address=f"news@{domain}",
            variants=[{"id": "a", "subject": "s", "text": "t"}],
            status="sending",
        )
        db.add(broadcast)
        db.flush()
        broadcast_id = broadcast.id
    redis = redis_client(settings)
    redis.delete(JOB_STREAM)
    redis.hset(progress_key(broadcast_id), "status", "sending")
    jobs = BroadcastJobs(settings, sessions, redis, Signer(settings.api.secret_key))
    start = time.perf_counter()
    jobs.send_broadcast({"broadcast_id": broadcast_id})
    seconds = time.perf_counter() - start
    queued = redis.xlen(JOB_STREAM)
    redis.close()
    engine.dispose()
    return {"contacts": contacts, "jobs_queued": queued, "seconds": round(seconds, 2)}


@dataclass
class Measured:
    load: LoadResult
    server_cpu: float
    redis_cpu: float
    load_average: list[float]

    def cost(self) -> dict[str, Any]:
        """CPU per request (robust to other load) and the generator's own share."""
        requests = max(1, self.load.requests)
        return {
            "server_cpu_ms_per_req": round(self.server_cpu / requests * 1000, 3),
            "redis_cpu_ms_per_req": round(self.redis_cpu / requests * 1000, 3),
            "client_cpu_ms_per_req": round(self.load.client_cpu_seconds / requests * 1000, 3),
            "client_cpu_share": round(
                self.load.client_cpu_seconds / (self.load.client_cpu_seconds + self.server_cpu), 3
            )
            if self.server_cpu
            else None,
            "load_average_1m": self.load_average[0],
        }


def _measured(
    pids: tuple[int, int],
    port: int,
    requests: list[bytes],
    connections: int,
    rate: float | None = None,
) -> Measured:
    """One load run; `pids` = (server, redis) for their CPU-seconds."""
    server, redis = pids
    before = process_tree_cpu_seconds(server), process_tree_cpu_seconds(redis, False)
    load = asyncio.run(run_load(port, requests, connections, rate))
    return Measured(
        load,
        process_tree_cpu_seconds(server) - before[0],
        process_tree_cpu_seconds(redis, False) - before[1],
        load_average(),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", choices=["real", "bare"])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)  # "on 2 cores"
    parser.add_argument("--contacts", type=int, default=100_000)
    # Redis appendfsync for the run (always = the shipped, durable config); give both to
    # compare them in one invocation (one JSON line, figures keyed by the setting).
    parser.add_argument(
        "--redis-fsync", nargs="+", choices=["always", "everysec"], default=["always"]
    )
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if len(args.redis_fsync) == 1:
        print(
            json.dumps({**run_bench(args, args.redis_fsync[0]), "redis_fsync": args.redis_fsync[0]})
        )
        return
    runs = {fsync: run_bench(args, fsync) for fsync in args.redis_fsync}
    print(json.dumps({"bench": "api", "redis_fsync": runs}))


def run_bench(args: argparse.Namespace, redis_fsync: str = "always") -> dict[str, Any]:
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
        redis_pid = stack.start(redis_spec(settings, durable=True, appendfsync=redis_fsync))
        stack.start(kafka_spec(settings))
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
        signer = Signer(settings.api.secret_key)
        pixels = [
            build_request(
                "GET", f"/t/o/{signer.dumps(OPEN_PURPOSE, [f'm{i}@{domain}', team_id])}", port
            )
            for i in range(args.requests)
        ]

        real = _start_server("real", env, port)
        try:
            asyncio.run(run_load(port, warmup, args.connections))
            emails = _measured((real.pid, redis_pid), port, posts, args.connections)
            paced = _measured(
                (real.pid, redis_pid), port, posts[: min(len(posts), 10_000)], 256, rate=1000
            )
            asyncio.run(run_load(port, pixels[:500], args.connections))
            pixel = _measured((real.pid, redis_pid), port, pixels, args.connections)
        finally:
            _stop(real)
        bare = _start_server("bare", env, port)
        try:
            asyncio.run(run_load(port, warmup, args.connections))
            baseline = _measured((bare.pid, redis_pid), port, posts, args.connections)
        finally:
            _stop(bare)
        fanout = _fanout(settings, team_id, domain, args.contacts)
    finally:
        stack.stop_all(order=["kafka", "redis"])
    return {
        "bench": "api",
        "cores": os.cpu_count(),
        "uvicorn_workers": args.workers,
        "emails_per_s": round(emails.load.rate, 1),
        "emails_errors": emails.load.errors,
        "emails_statuses": emails.load.statuses,
        "emails_cost": emails.cost(),
        "baseline": "bare FastAPI POST endpoint, same uvicorn setup",
        "baseline_per_s": round(baseline.load.rate, 1),
        "baseline_cost": baseline.cost(),
        "ratio_to_baseline": (
            round(emails.load.rate / baseline.load.rate, 3) if baseline.load.rate else None
        ),
        "cpu_ratio_to_baseline": round(
            baseline.server_cpu
            / baseline.load.requests
            / (emails.server_cpu / emails.load.requests),
            3,
        ),
        "paced_1000_rps": {
            "achieved_per_s": round(paced.load.rate, 1),
            "p50_ms": round(paced.load.percentile(0.50) * 1000, 2),
            "p99_ms": round(paced.load.percentile(0.99) * 1000, 2),
            "p99_ms_after_first_2_s": round(paced.load.percentile_due_after(0.99, 2.0) * 1000, 2),
            "errors": paced.load.errors,
            **paced.cost(),
        },
        "pixel_per_s": round(pixel.load.rate, 1),
        "pixel_errors": pixel.load.errors,
        "pixel_cost": pixel.cost(),
        "fanout": fanout,
        "targets": TARGETS,
    }


if __name__ == "__main__":
    main()
