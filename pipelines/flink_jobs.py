"""``kibamail flink``: run the Flink SQL reputation jobs in their own uv project.

PyFlink cannot live in this environment (its protobuf pin conflicts with dbt), so the
jobs run with ``pipelines/flink``'s interpreter; this side passes the broker and the
contract's topic names on the command line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from kibamail.settings import Settings
from pipelines.contracts import Topic

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
    return argv


def run_jobs(settings: Settings, **options: object) -> subprocess.Popen[bytes]:
    """Start the jobs; the caller waits (bounded runs end by themselves)."""
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    return subprocess.Popen(job_command(settings, **options), env=env)  # type: ignore[arg-type]
