"""Static checks of every other deployment artifact: checkov over the rendered overlays,
`haproxy -c` on the shipped configs, `systemd-analyze verify` on the units, the Nomad job
parsed, the Dagster Helm values, and the image's Containerfile and health probe."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy_support import DEPLOY, K8S, OVERLAYS, REPO, render, tool
from tests.test_deploy_k8s import _is_cli_command

pytestmark = pytest.mark.unit
UNITS = DEPLOY / "bare-metal" / "systemd"


def test_checkov_finds_nothing_in_the_rendered_overlays(tmp_path: Path) -> None:
    for overlay in OVERLAYS:
        (tmp_path / f"{overlay}.yaml").write_text(yaml.safe_dump_all(render(overlay)))
    result = subprocess.run(
        [tool("checkov"), "-d", str(tmp_path), "--config-file", str(DEPLOY / "checkov.yaml"),
         "-o", "json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [
        f"{c['check_id']} {c['resource']}: {c['check_name']}"
        for report in reports
        for c in report["results"]["failed_checks"]
    ]
    assert not failed, "\n".join(failed)
    assert sum(r["summary"]["passed"] for r in reports) > 1000  # it really scanned them


@pytest.mark.parametrize("config", ["haproxy.cfg", "edge.cfg"])
def test_haproxy_accepts_the_shipped_configs(config: str) -> None:
    result = subprocess.run(
        [tool("haproxy"), "-c", "-f", str(REPO / "infra" / "haproxy" / config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout


def test_the_edge_sends_proxy_v2_to_every_mta_process() -> None:
    text = (REPO / "infra" / "haproxy" / "edge.cfg").read_text()
    assert {m for m in re.findall(r"bind :(\d+)", text)} == {"25", "587", "465"}
    assert "default-server send-proxy-v2" in text
    servers = re.findall(r"server mta(\d+) 127\.0\.0\.1:(\d+) check port (\d+)", text)
    assert len(servers) == 12
    for instance, port, metrics in servers:
        # The ports kibamail-mta@<instance>.service gives that process.
        assert port in {f"{instance}587", f"{instance}465", f"{instance}025"}
        assert metrics == f"19{instance}1"
    unit = (UNITS / "kibamail-mta@.service").read_text()
    for var in (
        "SUBMISSION_PORT=%i587",
        "SMTPS_PORT=%i465",
        "INBOUND_PORT=%i025",
        "METRICS_PORT=19%i1",
    ):
        assert var in unit


def test_systemd_accepts_every_unit(tmp_path: Path) -> None:
    """Verified with the install prefix pointed at this checkout (/opt/kibamail is where the
    units expect the same tree in production), so ExecStart names a real executable."""
    names = []
    for unit in sorted(UNITS.glob("kibamail*.service")) + sorted(UNITS.glob("*.target")):
        text = unit.read_text().replace("/opt/kibamail", str(REPO))
        (tmp_path / unit.name).write_text(text)
        names.append(unit.name)
    instances = {
        "kibamail-mta@.service": "kibamail-mta@10.service",
        "kibamail-worker@.service": "kibamail-worker@1.service",
    }
    for template, instance in instances.items():
        (tmp_path / instance).symlink_to(tmp_path / template)
    to_verify = [str(tmp_path / instances.get(n, n)) for n in names]
    result = subprocess.run(
        [tool("systemd-analyze"), "verify", "--man=no", *to_verify],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"},
    )  # fmt: skip
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not output, output
    assert len(to_verify) == 7


def test_sysctl_files_are_key_value_lines() -> None:
    for path in (DEPLOY / "bare-metal" / "sysctl").glob("*.conf"):
        for line in path.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                if path.name.endswith("limits.conf"):
                    assert len(line.split()) == 4, line
                else:
                    key, _, value = line.partition(" = ")
                    assert re.fullmatch(r"[a-z0-9_.-]+", key) and value, line


def _unquote(value: Any) -> Any:
    """python-hcl2 8 keeps string literals quoted (``'"api"'``); compare plain values."""
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items() if k != "__is_block__"}
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    if isinstance(value, str) and len(value) > 1 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _nomad_job() -> dict[str, Any]:
    script = "import hcl2, json, sys; print(json.dumps(hcl2.load(open(sys.argv[1]))))"
    out = subprocess.run(
        [tool("python", "hcl2"), "-c", script, str(DEPLOY / "nomad" / "kibamail.nomad.hcl")],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    parsed = _unquote(json.loads(out))
    (job,) = parsed["job"]
    return dict(job["kibamail"])


def test_the_nomad_job_parses_and_runs_real_commands() -> None:
    job = _nomad_job()
    groups = {name: spec for group in job["group"] for name, spec in group.items()}
    assert set(groups) == {"api", "mta", "pipelines", "workers"}
    commands = []
    for group in groups.values():
        for task in group.get("task", []):
            for spec in task.values():
                config = spec["config"][0] if isinstance(spec["config"], list) else spec["config"]
                commands.append([config["command"], *config["args"]])
        for dynamic in group.get("dynamic", []):
            content = dynamic["task"]["content"]
            content = content[0] if isinstance(content, list) else content
            config = (
                content["config"][0] if isinstance(content["config"], list) else content["config"]
            )
            commands.append([config["command"], *config["args"]])
    roles = {" ".join(c[1:]) for c in commands}
    assert roles == {"api", "mta", "pipelines", "api worker", "api webhooks", "api outbox"}
    assert all(_is_cli_command(c) for c in commands), commands


def test_dagster_values_run_our_code_location_without_bitnami() -> None:
    values = yaml.safe_load((K8S / "dagster-values.yaml").read_text())
    (location,) = values["dagster-user-deployments"]["deployments"]
    assert location["image"]["repository"] == "ghcr.io/kibamail/kibamail"
    module = location["dagsterApiGrpcArgs"][
        location["dagsterApiGrpcArgs"].index("--module-name") + 1
    ]
    assert importlib.util.find_spec(module) is not None
    assert values["postgresql"]["enabled"] is False  # the chart's bundled DB is a Bitnami image
    assert values["dagsterDaemon"]["enabled"] is True
    assert {"name": "kibamail-secrets"} in location["envSecrets"]


def test_the_containerfile_is_multi_stage_locked_and_non_root() -> None:
    text = (DEPLOY / "image" / "Containerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    assert len(stages) == 2 and stages[0].split()[2] == "build"
    build, final = stages
    assert "uv sync --frozen --no-dev" in build
    assert (
        "uv" not in re.sub(r"#.*", "", final).replace("/usr/local/bin/kibamail-probe", "").split()
    )
    assert "COPY --from=build" in final
    assert re.search(r"^USER 10001:10001$", final, flags=re.M)
    assert "HEALTHCHECK" in final and "kibamail-probe" in final
    for script in ("build.sh", "smoke.sh"):
        result = subprocess.run(
            ["bash", "-n", str(DEPLOY / "image" / script)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr


def _probe() -> Any:
    spec = importlib.util.spec_from_file_location("kibamail_probe", DEPLOY / "image" / "probe.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_probe_finds_each_role_from_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # The image's defaults, not whatever ports this test session's services exported.
    for name in (
        "KIBAMAIL_API__HOST",
        "KIBAMAIL_API__PORT",
        "KIBAMAIL_MTA__METRICS_HOST",
        "KIBAMAIL_MTA__METRICS_PORT",
        "KIBAMAIL_PIPELINES__METRICS_HOST",
        "KIBAMAIL_PIPELINES__METRICS_PORT",
    ):
        monkeypatch.delenv(name, raising=False)
    probe = _probe()
    assert (
        probe.role_from_argv(["/app/.venv/bin/python", "/app/.venv/bin/kibamail", "api"]) == "api"
    )
    assert probe.role_from_argv(["kibamail", "api", "worker"]) == "api worker"
    assert probe.role_from_argv(["kibamail", "mta", "--no-listeners"]) == "mta"
    assert probe.role_from_argv(["dagster", "api", "grpc"]) == ""
    assert probe.endpoint("api").endswith(":18000/healthz")
    assert probe.endpoint("mta").endswith(":19101/metrics")
    assert probe.endpoint("pipelines").endswith(":19102/metrics")
    assert probe.endpoint("api worker") is None


def test_the_probe_fails_when_the_role_does_not_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("KIBAMAIL_MTA__METRICS_PORT", str(port))
    assert _probe().main(["mta"]) == 1
