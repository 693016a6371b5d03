"""`kibamail dagster`: the Dagster webserver (ops console) and daemon as child processes.

DAGSTER_HOME gets a dagster.yaml keeping run/event storage in that directory; SIGTERM
or SIGINT to this process is forwarded to both children, and if either child dies the
other is stopped too, so the stack's supervisor sees one process with one exit code.
Health: HTTP GET /server_info on the webserver port.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from kibamail.settings import REPO_ROOT, Settings, settings_to_env

DAGSTER_YAML = """\
# Written by `kibamail dagster`: local storage under DAGSTER_HOME, no telemetry.
telemetry:
  enabled: false
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 2
"""


def prepare_home(home: Path) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return config


def child_commands(settings: Settings) -> dict[str, list[str]]:
    bin_dir = Path(sys.executable).parent
    target = ["-m", "dagster_project.definitions", "-d", str(REPO_ROOT)]
    return {
        "webserver": [
            str(bin_dir / "dagster-webserver"),
            "-h",
            "127.0.0.1",
            "-p",
            str(settings.dagster.webserver_port),
            *target,
        ],
        "daemon": [str(bin_dir / "dagster-daemon"), "run", *target],
    }


def run(settings: Settings) -> int:
    from dagster_project.project import ensure_manifest

    home = settings.dagster.home
    prepare_home(home)
    ensure_manifest()
    env = {**os.environ, **settings_to_env(settings), "DAGSTER_HOME": str(home)}
    children = {
        name: subprocess.Popen(argv, env=env, cwd=REPO_ROOT)
        for name, argv in child_commands(settings).items()
    }
    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    exit_code = 0
    while children:
        for name, child in list(children.items()):
            code = child.poll()
            if code is None:
                continue
            del children[name]
            # A child ending on the signal we forwarded is a clean stop.
            exit_code = exit_code or (0 if stopping and code < 0 else code)
            if not stopping:
                stopping = True
                for other in children.values():
                    other.terminate()
        time.sleep(0.5)
    return exit_code
