"""`kibamail flink` as the stack runs it: loopback-bound, health-checked, restarted.

The stack's ``flink`` service (local_stack/up.py ``app_specs``) starts the unbounded reputation
job on an embedded mini-cluster bound and advertised on 127.0.0.1 (so a machine whose
hostname does not resolve can run it) with its REST API on ``pipelines.flink_rest_port``;
healthy means the job is RUNNING. If the job's process dies, ``kibamail flink`` starts
it again.
"""

from __future__ import annotations

import os
import signal
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from kibamail.settings import Settings
from local_stack import up
from local_stack.services import flink_spec
from local_stack.stack import Stack, free_port
from pipelines.flink_jobs import FLINK_PROJECT, running_jobs
from pipelines.tests.conftest import wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        not (FLINK_PROJECT / ".venv").exists(), reason="run `uv sync` in pipelines/flink first"
    ),
]

JOB = "kibamail-reputation-signals"


def rest(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return orjson.loads(response.read())


def job_processes(supervisor: int) -> list[int]:
    """The job's process (the supervisor's child, its own session) and that one's children."""
    found: list[int] = []
    todo = [supervisor]
    while todo:
        pid = todo.pop()
        for task in Path(f"/proc/{pid}/task").iterdir():
            kids = [int(k) for k in (task / "children").read_text().split()]
            found += kids
            todo += kids
    return found


def test_app_specs_include_flink(test_settings: Settings) -> None:
    specs = up.app_specs(test_settings)
    assert specs["flink"].argv[-1] == "flink"
    assert specs["flink"].ports == [test_settings.pipelines.flink_rest_port]
    assert up.STOP_ORDER.index("flink") < up.STOP_ORDER.index("kafka")


@pytest.mark.timeout(600)
def test_kibamail_flink_runs_on_loopback_and_restarts_its_job(
    test_settings: Settings, test_stack: Stack, kafka_service: str
) -> None:
    port = free_port()
    pipelines = test_settings.pipelines.model_copy(update={"flink_rest_port": port})
    settings = test_settings.model_copy(update={"pipelines": pipelines})
    spec = flink_spec(settings)
    spec.name = "flink-stack-test"
    supervisor = test_stack.start(spec)  # returns once the job is RUNNING
    try:
        assert running_jobs(port) == [JOB]
        config = {item["key"]: item["value"] for item in rest(port, "/jobmanager/config")}
        for key in ("jobmanager.rpc.address", "taskmanager.host", "rest.bind-address"):
            assert config[key] == "127.0.0.1", key
        [first_job] = [job["jid"] for job in rest(port, "/jobs/overview")["jobs"]]

        # The job's process group dies (a JVM crash): `kibamail flink` starts it again.
        victims = job_processes(supervisor)
        assert victims
        os.killpg(victims[0], signal.SIGKILL)
        assert wait_until(lambda: running_jobs(port) == [JOB], 300, 1.0)
        [second_job] = [job["jid"] for job in rest(port, "/jobs/overview")["jobs"]]
        assert second_job != first_job
        restarted = job_processes(supervisor)
    finally:
        test_stack.stop("flink-stack-test", timeout=30)
    # Stopping the service stops the job and its JVM too.
    assert wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in restarted), 30)
