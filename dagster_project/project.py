"""The dbt project as Dagster sees it: where it lives and how its manifest is made.

The manifest comes from `dbt parse` (offline: the project has no packages to
download). It is rebuilt at load time whenever a model, macro or YAML file is newer
than it, so `kibamail dagster`, the tests and the demo never load a stale graph.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dagster_dbt import DbtProject

from kibamail.settings import REPO_ROOT

DBT_PROJECT_DIR = REPO_ROOT / "dbt"
DBT_TARGET_DIR = DBT_PROJECT_DIR / "target"
MANIFEST_PATH = DBT_TARGET_DIR / "manifest.json"
_SOURCE_GLOBS = ("dbt_project.yml", "profiles.yml", "models/**/*", "macros/**/*", "tests/**/*")


def _newest_source_mtime() -> float:
    return max(
        (path.stat().st_mtime for glob in _SOURCE_GLOBS for path in DBT_PROJECT_DIR.glob(glob)),
        default=0.0,
    )


def dbt_executable() -> str:
    """The dbt CLI of this virtualenv (not whatever `dbt` is first on PATH)."""
    candidate = Path(sys.executable).parent / "dbt"
    return str(candidate) if candidate.exists() else "dbt"


def ensure_manifest(force: bool = False) -> Path:
    """Run `dbt parse` when the manifest is missing or older than the project files."""
    stale = not MANIFEST_PATH.exists() or MANIFEST_PATH.stat().st_mtime < _newest_source_mtime()
    if force or stale:
        result = subprocess.run(
            [
                dbt_executable(),
                "parse",
                "--quiet",
                "--project-dir",
                str(DBT_PROJECT_DIR),
                "--profiles-dir",
                str(DBT_PROJECT_DIR),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if result.returncode != 0 or not MANIFEST_PATH.exists():
            raise RuntimeError(f"dbt parse failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")
    return MANIFEST_PATH


warehouse_project = DbtProject(
    project_dir=DBT_PROJECT_DIR,
    profiles_dir=DBT_PROJECT_DIR,
    target_path=DBT_TARGET_DIR,
)
