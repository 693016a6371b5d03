"""Top frames of a py-spy profile: ``python -m bench.spy_top FILE [--top N]``.

``py-spy record -p PID -d 15 -r 50 -f raw -o FILE`` writes collapsed stacks (one
``frame;frame;... count`` per line); this prints the functions with the most samples on
top of the stack (self) and anywhere in it (inclusive), as shares of all samples. The
profiles in bench/README.md were made this way.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_LINE = re.compile(r" \(([^)]*?):\d+\)$")
# Leaves where a thread waits (py-spy samples threads blocked in C as active): the
# thread pool's queue, the metrics HTTP server's select, the event loop's own poll.
IDLE_LEAVES = {
    "_worker (thread.py)",
    "_PollLikeSelector.select (selectors.py)",
    "BaseSelectorEventLoop.select (selectors.py)",
    "EpollSelector.select (selectors.py)",
    "Condition.wait (threading.py)",
    "Event.wait (threading.py)",
}


def _function(frame: str) -> str:
    """``name (path/file.py:123)`` -> ``name (file.py)``: lines of one function merge."""
    match = _LINE.search(frame)
    if not match:
        return frame
    return f"{frame[: match.start()]} ({Path(match.group(1)).name})"


def top(path: Path, count: int) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        n = int(samples)
        frames = [_function(f) for f in stack.split(";") if not f.startswith("process ")]
        if not frames or frames[-1] in IDLE_LEAVES:
            continue
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    return total, own.most_common(count), inclusive.most_common(count)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spy_top")
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    total, own, inclusive = top(args.file, args.top)
    print(f"{total} busy samples (threads waiting in C left out)")
    for title, rows in (("self", own), ("inclusive", inclusive)):
        print(f"-- {title}")
        for name, n in rows:
            print(f"{100 * n / max(total, 1):5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
