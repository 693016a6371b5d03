"""What every benchmark's JSON line carries beside its rates: CPU seconds per component,
peak RSS per process, the load average during the run, and the ``complete`` gate.

On a shared 2-core machine wall-clock rates move with the neighbours; CPU per unit of
work and the load average sampled *during* the run say how much the figure is worth. A
run that lost or could not account for any operation is ``"complete": false`` and meets
no target, whatever its rate.
"""

from __future__ import annotations

import os
import resource
import threading
from pathlib import Path
from typing import Any

from .cpu import process_cpu_seconds


def _tree(pid: int) -> list[int]:
    """The process and its live descendants (uvicorn workers, npm children...)."""
    out, pending = [], [pid]
    while pending:
        current = pending.pop()
        out.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return out


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


class RunMeter:
    """CPU seconds and peak RSS of named processes (with their children unless told not
    to: Redis' AOF-rewrite fork comes and goes) and of this process; the 1-minute load
    average sampled every ``interval`` seconds between ``start`` and ``stop``."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.pids: dict[str, tuple[int, bool]] = {}
        self._cpu_start: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.peak_rss_kb: dict[str, int] = {}
        self.loads: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, name: str, pid: int | None, children: bool = True) -> None:
        if pid is not None:
            self.pids[name] = (pid, children)

    def add_self(self, name: str = "bench_process") -> None:
        self.add(name, os.getpid(), children=False)

    def _cpu(self, pid: int, children: bool) -> float:
        total = 0.0
        for member in _tree(pid) if children else [pid]:
            try:
                total += process_cpu_seconds(member)
            except OSError:
                continue
        return total

    def sample(self) -> None:
        self.loads.append(os.getloadavg()[0])
        for name, (pid, children) in self.pids.items():
            members = _tree(pid) if children else [pid]
            rss = sum(_status_kb(m, "VmRSS:") for m in members)
            hwm = max((_status_kb(m, "VmHWM:") for m in members), default=0)
            self.peak_rss_kb[name] = max(self.peak_rss_kb.get(name, 0), rss, hwm)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> RunMeter:
        self._cpu_start = {n: self._cpu(p, c) for n, (p, c) in self.pids.items()}
        self.sample()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        """Call before the measured processes exit."""
        self.sample()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.cpu = {
            n: round(self._cpu(p, c) - self._cpu_start.get(n, 0.0), 2)
            for n, (p, c) in self.pids.items()
        }
        if any(p == os.getpid() for p, _ in self.pids.values()):
            own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            for name, (pid, _) in self.pids.items():
                if pid == os.getpid():
                    self.peak_rss_kb[name] = max(self.peak_rss_kb.get(name, 0), own)
        return self.report()

    def report(self) -> dict[str, Any]:
        loads = self.loads or [os.getloadavg()[0]]
        return {
            "cpu_seconds": {**self.cpu, "total": round(sum(self.cpu.values()), 2)},
            "peak_rss_mb": {n: round(kb / 1024, 1) for n, kb in self.peak_rss_kb.items()},
            "load_average": load_summary(loads),
        }

    def cpu_ms_per(self, units: int) -> dict[str, float]:
        """CPU milliseconds per unit of work (message, request, event) per component."""
        if units <= 0:
            return {}
        out = {n: round(1000 * s / units, 3) for n, s in self.cpu.items()}
        out["total"] = round(1000 * sum(self.cpu.values()) / units, 3)
        return out


def load_summary(samples: list[float]) -> dict[str, Any]:
    """The 1-minute load average during a run (min, mean, max) and the 1/5/15 at its end."""
    return {
        "min_1m": round(min(samples), 2),
        "mean_1m": round(sum(samples) / len(samples), 2),
        "max_1m": round(max(samples), 2),
        "end_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def finish(result: dict[str, Any], complete: bool, targets: dict[str, bool]) -> dict[str, Any]:
    """Sets ``complete`` and ``targets_met``: a target counts only in a complete run, and a
    run on a loaded machine (mean 1-min load above the cores) is flagged as such."""
    result["complete"] = complete
    result["targets_met"] = {name: bool(met) and complete for name, met in targets.items()}
    cores = os.cpu_count() or 1
    loads = [
        v["load_average"]["mean_1m"]
        for v in [result, *[x for x in result.values() if isinstance(x, dict)]]
        if isinstance(v.get("load_average"), dict)
    ]
    result["machine_loaded"] = bool(loads) and max(loads) > cores
    return result
