"""Stall evidence from inside the API server processes during ``bench.api``.

With ``KIBAMAIL_BENCH_PROBE_DIR`` set, ``bench.api:real_app`` wraps the app so each
uvicorn worker records, from its first request until it exits:

- garbage-collection pauses per generation (``gc.callbacks``): count, total and max ms;
- event-loop lag: a task asks to wake every 5 ms and notes how late it woke (a blocked
  loop delays every request it holds by as much);

and rewrites them to ``probe-<pid>.json`` in that directory every second (uvicorn's
workers do not always run ``atexit`` hooks) and at exit. The benchmark adds
Redis' own latency monitor (fsync and command stalls) read after the paced run.
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import json
import os
import time
from pathlib import Path
from typing import Any

TICK = 0.005


class Probe:
    def __init__(self, out_dir: Path) -> None:
        self.out = out_dir / f"probe-{os.getpid()}.json"
        self.gc: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._gc_started = 0.0
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None
        gc.callbacks.append(self._on_gc)
        atexit.register(self.write)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._task is not None:  # only once serving
            self.gc[info["generation"]].append((time.perf_counter() - self._gc_started) * 1000)

    async def _ticker(self) -> None:
        written = time.perf_counter()
        while True:
            asked = time.perf_counter()
            await asyncio.sleep(TICK)
            now = time.perf_counter()
            self.lags.append((now - asked - TICK) * 1000)
            if now - written > 1.0:
                self.write()
                written = time.perf_counter()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._ticker())

    def summary(self) -> dict[str, Any]:
        lags = sorted(self.lags)

        def pct(q: float) -> float:
            return round(lags[min(len(lags) - 1, int(q * len(lags)))], 2) if lags else 0.0

        return {
            "gc_pauses": {
                f"gen{g}": {
                    "count": len(v),
                    "total_ms": round(sum(v), 1),
                    "max_ms": round(max(v, default=0.0), 2),
                    "over_10ms": sum(1 for x in v if x > 10),
                }
                for g, v in self.gc.items()
            },
            "loop_lag_ms": {
                "samples": len(lags),
                "p50": pct(0.5),
                "p99": pct(0.99),
                "p99_9": pct(0.999),
                "max": round(lags[-1], 2) if lags else 0.0,
                "over_20ms": sum(1 for x in lags if x > 20),
            },
        }

    def write(self) -> None:
        self.out.write_text(json.dumps(self.summary()))


def wrap(app: Any) -> Any:
    """The app, probed when ``KIBAMAIL_BENCH_PROBE_DIR`` is set."""
    out = os.environ.get("KIBAMAIL_BENCH_PROBE_DIR")
    if not out:
        return app
    probe = Probe(Path(out))

    async def probed(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            probe.start()
        await app(scope, receive, send)

    return probed


def collect(out_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(out_dir.glob("probe-*.json"))]


def redis_latency(client: Any) -> dict[str, Any]:
    """Redis' latency monitor: the worst event of each kind (aof-fsync-always, command...)."""
    out: dict[str, Any] = {}
    for row in client.execute_command("LATENCY", "LATEST"):
        name, _, latest, worst = row[:4]
        out[name.decode() if isinstance(name, bytes) else str(name)] = {
            "latest_ms": int(latest),
            "max_ms": int(worst),
        }
    return out
