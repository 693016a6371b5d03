"""Report parsing off the event loop: a small process pool, a bounded queue, and a time
and memory limit per job.

Inbound reports come from strangers. Parsing one with the ``email`` package is pure
Python: on the event loop (or a thread, sharing the GIL) a 20 MiB, 50,000-part message
would stall every SMTP session of the process, submission included. Jobs therefore run
in child processes (spawned lazily, on the first report), at most ``max_pending`` at
once (beyond: ``PoolBusy``, answered 451); each child caps its address space and each
job gets ``seconds`` of wall time (SIGALRM in the child) before it is abandoned.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import resource
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from . import metrics

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_MEMORY_BYTES = 2 * 1024 * 1024 * 1024


class PoolBusy(Exception):
    """Too many reports waiting: ask the sender to come back later."""


class JobLimitError(Exception):
    """A job ran out of time or memory, or its worker died."""


def _init_child(memory_bytes: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))


def _expire(signum: int, frame: object) -> None:
    raise JobLimitError("report processing took too long")


def _bounded(seconds: float, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    """Runs in the child: ``fn(*args)`` with a wall-time limit."""
    signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn(*args)
    except MemoryError:
        raise JobLimitError("report processing ran out of memory") from None
    except RecursionError:
        raise JobLimitError("report nested too deep to process") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


class ReportPool:
    def __init__(
        self,
        workers: int = 2,
        max_pending: int = 8,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
    ) -> None:
        self.workers = workers
        self.max_pending = max_pending
        self.memory_bytes = memory_bytes
        self.pending = 0
        self._executor: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_child,
                initargs=(self.memory_bytes,),
            )
        return self._executor

    async def run(
        self,
        fn: Callable[..., T],
        *args: Any,
        seconds: float,
        keepalive: Callable[[], None] | None = None,
    ) -> T:
        """``fn(*args)`` in a worker process. ``keepalive`` runs every second while the
        job is queued or running (the SMTP session's idle timer must not fire meanwhile)."""
        if self.pending >= self.max_pending:
            metrics.INBOUND_REFUSED.labels("busy").inc()
            raise PoolBusy("too many reports being processed")
        self.pending += 1
        metrics.INBOUND_PROCESSING.inc()
        try:
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(self._pool(), _bounded, seconds, fn, args)
            while not future.done():
                if keepalive is not None:
                    keepalive()
                await asyncio.wait({future}, timeout=1.0)
            return future.result()
        except BrokenProcessPool:
            log.warning("a report worker died (memory limit?); starting fresh workers")
            self.close()
            raise JobLimitError("report processing failed (worker limit reached)") from None
        finally:
            self.pending -= 1
            metrics.INBOUND_PROCESSING.dec()

    def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
