"""`kibamail docs`: dbt docs for analysts (descriptions, tests, lineage, column types).

`dbt docs generate` reads the catalog from the warehouse, so it needs ClickHouse up;
the site is static files (index.html + manifest.json + catalog.json) served on loopback.
"""

from __future__ import annotations

import functools
import http.server
import subprocess
from pathlib import Path

from dagster_project.project import DBT_PROJECT_DIR, DBT_TARGET_DIR, dbt_executable
from kibamail.settings import Settings, settings_to_env


def generate_docs(settings: Settings) -> Path:
    import os

    result = subprocess.run(
        [
            dbt_executable(),
            "docs",
            "generate",
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR),
        ],
        env={**os.environ, **settings_to_env(settings)},
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if result.returncode != 0:
        raise RuntimeError(f"dbt docs generate failed:\n{result.stdout[-3000:]}{result.stderr}")
    for name in ("index.html", "manifest.json", "catalog.json"):
        if not (DBT_TARGET_DIR / name).exists():
            raise RuntimeError(f"dbt docs generate did not write {name}")
    return DBT_TARGET_DIR


def serve_docs(site: Path, port: int) -> None:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        print(f"dbt docs on http://127.0.0.1:{port}/", flush=True)
        server.serve_forever()
