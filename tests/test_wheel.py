"""The wheel ships the runtime packages and their data, and nothing that only a checkout needs.

Production installs the wheel: the local stack, the test harness, benchmarks and tests
stay out of it, and the dev-only console commands say so instead of failing on an import.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from console.cli import main

REPO_ROOT = Path(__file__).resolve().parents[1]
RUNTIME_PACKAGES = {
    "kibamail", "console", "api", "mta", "pipelines", "dagster_project", "dashboards",
    "deliverability",
}  # fmt: skip
DEV_ONLY_PACKAGES = ("local_stack", "testing", "bench", "tests")


def _uv() -> str:
    uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    assert Path(uv).exists(), "uv is not installed (infra/scripts/install.sh installs it)"
    return uv


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    out = tmp_path_factory.mktemp("wheel")
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    result = subprocess.run(
        [_uv(), "build", "--wheel", "--offline", "--quiet", "-o", str(out)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    [wheel] = out.glob("kibamail-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        # The console script is the one entry point, and it is in the wheel.
        assert "kibamail = console.cli:main" in archive.read(entry_points).decode()
        return names


@pytest.mark.integration
def test_wheel_holds_the_runtime_packages_and_their_data(wheel_files: list[str]) -> None:
    top_level = {name.split("/")[0] for name in wheel_files if ".dist-info/" not in name}
    assert top_level == RUNTIME_PACKAGES
    for package in RUNTIME_PACKAGES:
        assert f"{package}/__init__.py" in wheel_files, package
    expected = {
        "console/cli.py",
        "console/__main__.py",
        "kibamail/schemas/outbound_message.json",
        "kibamail/clickhouse_schema/migrations/0001_raw_events.sql",
        "api/migrations/env.py",
        "api/migrations/script.py.mako",
        "mta/config/policies.toml",
        "pipelines/flink/reputation_jobs.py",
        "pipelines/flink/pyproject.toml",
        "pipelines/flink/uv.lock",
    }
    assert expected <= set(wheel_files), expected - set(wheel_files)
    for directory, suffix in [
        ("kibamail/schemas", ".json"),
        ("kibamail/clickhouse_schema/migrations", ".sql"),
        ("api/migrations/versions", ".py"),
        ("pipelines/flink/sql", ".sql"),
    ]:
        on_disk = {
            str(path.relative_to(REPO_ROOT)) for path in (REPO_ROOT / directory).glob(f"*{suffix}")
        }
        assert on_disk, directory
        assert on_disk <= set(wheel_files), on_disk - set(wheel_files)


@pytest.mark.integration
def test_wheel_leaves_out_tests_and_dev_only_code(wheel_files: list[str]) -> None:
    for name in wheel_files:
        parts = name.split("/")
        assert parts[0] not in DEV_ONLY_PACKAGES, name
        assert "tests" not in parts[:-1], name
        assert parts[-1] != "conftest.py", name
        assert ".venv" not in parts, name
        assert "__pycache__" not in parts, name
    assert "deliverability/samples.py" not in wheel_files


@pytest.mark.unit
@pytest.mark.parametrize(
    "args",
    [["up"], ["down"], ["status"], ["demo"], ["warehouse", "serve"],
     ["testnet", "--smtp-port", "1", "--dns-port", "2"]],
)  # fmt: skip
def test_dev_only_commands_explain_themselves_without_a_checkout(
    args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules is how Python marks a module as not importable.
    for package in ("local_stack", "testing"):
        monkeypatch.setitem(sys.modules, package, None)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "available from a source checkout only" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
