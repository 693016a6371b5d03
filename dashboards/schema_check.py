"""Validate rendered dashboards offline against Grafana's own TypeScript schema.

npm installs `@grafana/schema` (pinned to the Grafana line the SDK targets) and
`typescript` into a gitignored cache dir; each dashboard becomes a typed constant and
`tsc --noEmit` must accept it. String enums of the schema (e.g. ThresholdsMode) are
compared by value, which is what Grafana does when it loads JSON.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from kibamail.settings import REPO_ROOT

SCHEMA_VERSION = "11.6.0"
TYPESCRIPT_VERSION = "5.6.3"
CACHE_DIR = REPO_ROOT / ".stack" / "grafana-schema"

TSCONFIG = {
    "compilerOptions": {
        "strict": True,
        "noEmit": True,
        "module": "esnext",
        "moduleResolution": "bundler",
        "target": "es2020",
        "skipLibCheck": True,
    },
    "include": ["check/*.ts"],
}

PRELUDE = """\
import type { Dashboard } from '@grafana/schema';

// JSON carries enum values, not enum members: compare string enums by value.
type AsJson<T> = T extends string
  ? `${T}`
  : T extends number | boolean | null | undefined
    ? T
    : T extends Array<infer U>
      ? Array<AsJson<U>>
      : T extends object
        ? { [K in keyof T]: AsJson<T[K]> }
        : T;
"""


class SchemaCheckError(RuntimeError):
    """npm/tsc missing, or tsc rejected a dashboard (message has tsc's diagnostics)."""


def ensure_toolchain(cache_dir: Path = CACHE_DIR) -> Path:
    tsc = cache_dir / "node_modules" / ".bin" / "tsc"
    if tsc.exists() and (cache_dir / "node_modules" / "@grafana" / "schema").exists():
        return tsc
    npm = shutil.which("npm")
    if npm is None:
        raise SchemaCheckError("npm is not installed (Debian package npm/nodejs)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            npm,
            "install",
            "--no-audit",
            "--no-fund",
            "--prefix",
            str(cache_dir),
            f"@grafana/schema@{SCHEMA_VERSION}",
            f"typescript@{TYPESCRIPT_VERSION}",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if result.returncode != 0 or not tsc.exists():
        raise SchemaCheckError(f"npm install failed: {result.stderr[-2000:]}")
    return tsc


def check_dashboards(dashboards: dict[str, str], cache_dir: Path = CACHE_DIR) -> None:
    """Raise SchemaCheckError unless tsc accepts every dashboard JSON (name -> JSON text)."""
    tsc = ensure_toolchain(cache_dir)
    check_dir = cache_dir / "check"
    shutil.rmtree(check_dir, ignore_errors=True)
    check_dir.mkdir(parents=True)
    (cache_dir / "tsconfig.json").write_text(json.dumps(TSCONFIG, indent=2))
    for name, text in dashboards.items():
        ident = "d_" + "".join(c if c.isalnum() else "_" for c in name)
        body = f"{PRELUDE}\nexport const {ident}: AsJson<Dashboard> = {text.strip()};\n"
        (check_dir / f"{name}.ts").write_text(body)
    result = subprocess.run(
        [str(tsc), "--noEmit", "-p", str(cache_dir / "tsconfig.json")],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        cwd=cache_dir,
    )
    if result.returncode != 0:
        raise SchemaCheckError(f"tsc rejected dashboards:\n{result.stdout[-4000:]}")
