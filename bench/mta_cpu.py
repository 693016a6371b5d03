"""CPU-seconds per process for the MTA benchmarks (robust to a loaded, shared machine).

Wall-clock msgs/s moves with whatever else runs on the 2 cores; the CPU time each
process spent per delivered message does not, so ``bench.mta`` reports both. Read from
``/proc/<pid>/stat`` (utime + stime), no extra dependency.
"""

from __future__ import annotations

import threading
import time

from . import cpu


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (0.0 once it is gone)."""
    try:
        return cpu.process_cpu_seconds(pid)
    except OSError:
        return 0.0


class CpuMeter:
    """CPU seconds spent by named processes (and threads of this one) between two marks."""

    def __init__(self) -> None:
        self.pids: dict[str, int] = {}
        self._start: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def add(self, name: str, pid: int | None) -> None:
        if pid is not None:
            self.pids[name] = pid

    def start(self) -> None:
        self._start = {name: process_cpu_seconds(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        """Seconds per process since ``start`` (call before the processes exit)."""
        self.used = {
            name: round(process_cpu_seconds(pid) - self._start.get(name, 0.0), 2)
            for name, pid in self.pids.items()
        }
        return self.used

    def per_message_ms(self, messages: int, parts: dict[str, float]) -> dict[str, float]:
        """CPU milliseconds per message: every process, their total, and ``parts`` (threads
        inside a measured process, shown but not added to the total again)."""
        if not messages:
            return {}
        out = {name: round(1000 * secs / messages, 3) for name, secs in self.used.items()}
        out["total"] = round(1000 * sum(self.used.values()) / messages, 3)
        out.update({name: round(1000 * secs / messages, 3) for name, secs in parts.items()})
        return out


class ThreadCpu:
    """CPU seconds of the calling thread between construction and ``seconds()``."""

    def __init__(self) -> None:
        self.begin = time.thread_time()
        self.ident = threading.get_ident()

    def seconds(self) -> float:
        return round(time.thread_time() - self.begin, 2)
