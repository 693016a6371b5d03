"""`kibamail dagster` serves the ops console; `kibamail docs` builds the dbt docs site."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from typing import Any

import pytest

from dagster_project.serve import DAGSTER_YAML, prepare_home
from kibamail.settings import REPO_ROOT, Settings, settings_to_env
from local_stack.stack import python_cmd

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def server_info(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as resp:
            return json.loads(resp.read())
    except OSError:
        return None


def test_dagster_command_serves_and_stops_on_sigterm(test_settings: Settings) -> None:
    port = test_settings.dagster.webserver_port
    env = {**os.environ, **settings_to_env(test_settings)}
    proc = subprocess.Popen(python_cmd("dagster"), env=env, cwd=REPO_ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + 400
        info = None
        while info is None and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(2)
            info = server_info(port)
        assert info is not None, "webserver never answered /server_info"
        assert "dagster_webserver_version" in info
        assert (test_settings.dagster.home / "dagster.yaml").read_text() == DAGSTER_YAML
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    assert server_info(port) is None
    assert code in (0, -signal.SIGTERM, 128 + signal.SIGTERM)


def test_prepare_home_keeps_an_operator_edited_config(tmp_path: Any) -> None:
    config = tmp_path / "dagster.yaml"
    config.write_text("telemetry:\n  enabled: false\n")
    prepare_home(tmp_path)
    assert config.read_text() == "telemetry:\n  enabled: false\n"


def test_docs_generate_describes_the_billing_rule(
    warehouse_service: Any, test_settings: Settings
) -> None:
    from dagster_project.docs import generate_docs

    site = generate_docs(test_settings)
    manifest = json.loads((site / "manifest.json").read_text())
    billing = manifest["nodes"]["model.kibamail.fct_billing_monthly"]
    assert "$0.25" in billing["description"] and "started block" in billing["description"]
    assert (site / "index.html").stat().st_size > 1000
    assert "sources" in json.loads((site / "catalog.json").read_text())
