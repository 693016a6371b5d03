#!/usr/bin/env bash
# Build the Kibamail image without any container registry:
#   1. debootstrap a minimal Debian 12 root with python3.11 (Debian packages only),
#   2. import it as the base image (buildah from scratch + add + commit),
#   3. buildah build infra/deploy/image/Containerfile over a clean `git archive` of HEAD
#      (no .venv, no uncommitted files, no tests/ or dev-only packages).
# uv and uv's cache are mounted into the build stage only (the final stage has neither).
#
# Usage: infra/deploy/image/build.sh [TAG]        (default TAG: kibamail:<git short sha>)
#        KIBAMAIL_BUILD_FLINK=1 also builds TAG-flink from Containerfile.flink (adds a JRE and
#        the pipelines/flink project; the Flink job submitter role).
# Env:   KIBAMAIL_BUILD_DIR (default /var/tmp/kibamail-image), DEBIAN_MIRROR,
#        KIBAMAIL_REBUILD_BASE=1 to redo the debootstrap root.
# Isolation: chroot by default (BUILDAH_ISOLATION=oci needs a runtime that supports the
# host's cgroups; crun 1.8 refuses cgroup v1/hybrid hosts such as this one).
# Needs: root (or a user with subuids), buildah, debootstrap, git, uv.
set -euo pipefail
cd "$(dirname "$0")/../../.."

TAG="${1:-kibamail:$(git rev-parse --short HEAD)}"
BUILD_DIR="${KIBAMAIL_BUILD_DIR:-/var/tmp/kibamail-image}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BASE_TAG="localhost/kibamail-base:bookworm"

fail() { echo "build: $*" >&2; exit 1; }
for tool in buildah debootstrap git uv; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool not found (infra/scripts/install.sh --image installs it)"
done
UV_BIN="$(command -v uv)"
# A shim (pyenv's is a shell script) cannot run inside the build root: mount the real binary.
if ! head -c 4 "$UV_BIN" | grep -q ELF; then
  UV_BIN="$(pyenv which uv 2>/dev/null || python3 -c 'import uv; print(uv.find_uv_bin())')"
fi
UV_CACHE="$(uv cache dir)"
mkdir -p "$BUILD_DIR" "$UV_CACHE"
# Behind a TLS-intercepting egress proxy the build stage needs the host's CA bundle to reach
# PyPI (uv's native-tls reads the system store); it is mounted for RUN steps only.
tls_args=()
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  tls_args=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro
            --build-arg UV_NATIVE_TLS=true)
fi

if [ "${KIBAMAIL_REBUILD_BASE:-0}" = 1 ] || ! buildah inspect --type image "$BASE_TAG" >/dev/null 2>&1; then
  rootfs="$BUILD_DIR/rootfs"
  rm -rf "$rootfs"
  echo "build: debootstrap bookworm into $rootfs"
  debootstrap --variant=minbase --include=python3.11,ca-certificates bookworm "$rootfs" "$MIRROR" \
    >"$BUILD_DIR/debootstrap.log" 2>&1 || fail "debootstrap failed, see $BUILD_DIR/debootstrap.log"
  # Nothing of apt's lists or caches in the image.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
  tar -C "$rootfs" -cf "$BUILD_DIR/rootfs.tar" .
  ctr="$(buildah from scratch)"
  buildah add "$ctr" "$BUILD_DIR/rootfs.tar" / >/dev/null
  buildah config --env LANG=C.UTF-8 --cmd /bin/bash "$ctr"
  buildah commit --quiet "$ctr" "$BASE_TAG" >/dev/null
  buildah rm "$ctr" >/dev/null
fi

context="$BUILD_DIR/context"
rm -rf "$context" && mkdir -p "$context"
git archive --format=tar HEAD | tar -x -C "$context"
flink_context="$BUILD_DIR/flink-context"
rm -rf "$flink_context" && mkdir -p "$flink_context/pipelines"
cp -a "$context/pipelines/flink" "$flink_context/pipelines/flink"
cp "$context/infra/deploy/image/Containerfile.flink" "$flink_context/"
# The wheel's exclusions (pyproject [tool.hatch.build.targets.wheel]): no tests, no dev-only
# packages, no benchmarks, and no Flink project (it has its own image, Containerfile.flink).
rm -rf "$context"/{tests,testing,local_stack,bench,conftest.py,.ci} "$context"/pipelines/flink
find "$context" -type d -name tests -prune -exec rm -rf {} +

echo "build: buildah build $TAG"
buildah build --format docker --layers --isolation "${BUILDAH_ISOLATION:-chroot}" \
  --build-arg BASE="$BASE_TAG" \
  --build-arg VERSION="$(git describe --always --dirty)" \
  --volume "$UV_BIN:/usr/local/bin/uv:ro" \
  --volume "$UV_CACHE:/uv-cache" \
  --network host "${tls_args[@]}" \
  -f "$context/infra/deploy/image/Containerfile" -t "$TAG" "$context"
echo "build: ok $TAG"

if [ "${KIBAMAIL_BUILD_FLINK:-0}" = 1 ]; then
  buildah build --format docker --layers --isolation "${BUILDAH_ISOLATION:-chroot}" \
    --build-arg KIBAMAIL_IMAGE="$TAG" \
    --volume "$UV_BIN:/usr/local/bin/uv:ro" \
    --volume "$UV_CACHE:/uv-cache" \
    --network host "${tls_args[@]}" \
    -f "$flink_context/Containerfile.flink" -t "$TAG-flink" "$flink_context"
  echo "build: ok $TAG-flink"
fi
