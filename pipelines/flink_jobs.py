"""``kibamail flink``: run the Flink SQL reputation jobs in their own uv project.

PyFlink cannot live in this environment (its protobuf pin conflicts with dbt), so the
jobs run with ``pipelines/flink``'s interpreter; this side passes the broker and the
contract's topic names on the command line. Unbounded (the stack's mode), the job runs
on an embedded mini-cluster bound to ``pipelines.flink_host`` with its REST API on
``pipelines.flink_rest_port`` (the health check: a RUNNING job), and is restarted with
backoff if it dies; it resumes from the offsets its checkpoints committed.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from kibamail.contracts import Topic
from kibamail.settings import Settings

log = logging.getLogger(__name__)

FLINK_PROJECT = Path(__file__).parent / "flink"


def flink_python() -> list[str]:
    """The Flink project's interpreter (``uv sync`` there creates it), or ``uv run``."""
    venv_python = FLINK_PROJECT / ".venv" / "bin" / "python"
    if venv_python.exists():
        return [str(venv_python)]
    uv = shutil.which("uv")
    if uv is None:
        raise RuntimeError(f"run `uv sync` in {FLINK_PROJECT} first (uv not found)")
    return [uv, "run", "--project", str(FLINK_PROJECT), "--frozen", "python"]


def job_command(
    settings: Settings,
    *,
    start_offsets: str | None = None,
    end_offsets: str | None = None,
    jobmanager: str | None = None,
    watermark_seconds: int = 5,
) -> list[str]:
    argv = [
        *flink_python(),
        str(FLINK_PROJECT / "reputation_jobs.py"),
        "--bootstrap",
        settings.kafka.bootstrap_servers,
        "--statuses-topic",
        Topic.MESSAGE_STATUSES.value,
        "--signals-topic",
        Topic.REPUTATION_SIGNALS.value,
        "--watermark-seconds",
        str(watermark_seconds),
    ]
    if start_offsets:
        argv += ["--start-offsets", start_offsets]
    if end_offsets:
        argv += ["--end-offsets", end_offsets]
    if jobmanager:
        argv += ["--jobmanager", jobmanager]
    else:
        # Bounded runs (tests, backfills) take any free REST port: the stack's may be taken.
        rest_port = 0 if end_offsets else settings.pipelines.flink_rest_port
        argv += ["--host", settings.pipelines.flink_host, "--rest-port", str(rest_port)]
    return argv


def run_jobs(settings: Settings, **options: Any) -> subprocess.Popen[bytes]:
    """Start the jobs in their own process group; bounded runs end by themselves."""
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    return subprocess.Popen(job_command(settings, **options), env=env, start_new_session=True)


def running_jobs(rest_port: int, host: str = "127.0.0.1") -> list[str]:
    """Names of the RUNNING jobs the embedded cluster reports ([] while it does not answer)."""
    try:
        url = f"http://{host}:{rest_port}/jobs/overview"
        with urllib.request.urlopen(url, timeout=2) as response:
            jobs = orjson.loads(response.read()).get("jobs", [])
    except (OSError, ValueError):
        return []
    return [str(job.get("name")) for job in jobs if job.get("state") == "RUNNING"]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the job's process group (its JVM included), SIGKILL if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=15)
            return
        except subprocess.TimeoutExpired:
            continue


def supervise(settings: Settings, stop: threading.Event, **options: Any) -> int:
    """Run the jobs until ``stop``; an unbounded job that dies is restarted with backoff.

    Bounded runs (``end_offsets``) and a remote ``jobmanager`` are not restarted: their
    exit status is the answer.
    """
    restart = not options.get("end_offsets") and not options.get("jobmanager")
    failures = 0
    while True:
        started = time.monotonic()
        proc = run_jobs(settings, **options)
        while proc.poll() is None and not stop.is_set():
            stop.wait(0.5)
        if stop.is_set():
            _stop(proc)
            return 0
        if not restart:
            return proc.returncode
        failures = 0 if time.monotonic() - started > 300 else failures + 1
        delay = min(60.0, 2.0 * 2**failures)
        log.error("flink jobs exited with %s; restarting in %.0f s", proc.returncode, delay)
        if stop.wait(delay):
            return 0


def run(settings: Settings, **options: Any) -> int:
    """``kibamail flink``: supervise until SIGTERM/SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return supervise(settings, stop, **options)
