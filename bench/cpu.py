"""CPU-seconds of processes from /proc: what every benchmark reports beside wall clock,
because on a shared 2-core machine CPU per unit of work moves far less than req/s."""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process, its threads included (OSError once gone)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def process_tree_cpu_seconds(pid: int, children: bool = True) -> float:
    """The same for a live process and (``children``) its live descendants. Redis is read
    without children: its AOF-rewrite fork comes and goes."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            total += process_cpu_seconds(current)
            if not children:
                continue
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(child) for child in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return total
