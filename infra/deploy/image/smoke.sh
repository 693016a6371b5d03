#!/usr/bin/env bash
# Run the API and the MTA from a built image (buildah, chroot isolation, host network) and
# check each role's health probe. Needs a redis-server on the host (Debian package).
# Usage: infra/deploy/image/smoke.sh IMAGE_TAG
set -euo pipefail
TAG="${1:?usage: smoke.sh IMAGE_TAG}"
WORK="$(mktemp -d)"
pids=(); ctrs=()
cleanup() {
  # buildah run's child is the role's process: stop it first, then buildah run itself.
  for pid in "${pids[@]}"; do pkill -TERM -P "$pid" 2>/dev/null || true; kill "$pid" 2>/dev/null || true; done
  sleep 2
  for ctr in "${ctrs[@]}"; do buildah rm "$ctr" >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

REDIS_PORT="$(free_port)"; API_PORT="$(free_port)"; METRICS_PORT="$(free_port)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" \
  >"$WORK/redis.log" 2>&1 & pids+=($!)
env_args=(
  --env KIBAMAIL_ENVIRONMENT=production
  --env KIBAMAIL_API__SECRET_KEY="smoke-$RANDOM$RANDOM$RANDOM"
  --env KIBAMAIL_MTA__REPORT_TOKEN_SECRET="smoke-$RANDOM$RANDOM$RANDOM"
  --env KIBAMAIL_CLICKHOUSE__PASSWORD=smoke
  --env KIBAMAIL_REDIS__URL="redis://127.0.0.1:$REDIS_PORT/0"
  --env KIBAMAIL_DATABASE__URL=sqlite:////var/lib/kibamail/kibamail.db
  --env KIBAMAIL_API__HOST=127.0.0.1 --env KIBAMAIL_API__PORT="$API_PORT"
  --env KIBAMAIL_MTA__LISTEN_HOST=127.0.0.1
  --env KIBAMAIL_MTA__SUBMISSION_PORT="$(free_port)" --env KIBAMAIL_MTA__SMTPS_PORT="$(free_port)"
  --env KIBAMAIL_MTA__INBOUND_PORT="$(free_port)" --env KIBAMAIL_MTA__METRICS_PORT="$METRICS_PORT"
  --env KIBAMAIL_MTA__DNS_SERVERS='["127.0.0.1"]'
)
# Runs in this shell (not a $(...) subshell), so cleanup sees every container and PID.
start_role() {  # role words...; sets $ctr
  ctr="$(buildah from "$TAG")"; ctrs+=("$ctr")
  buildah run --isolation chroot --network host "${env_args[@]}" "$ctr" -- "$@" \
    >"$WORK/${ctr}.log" 2>&1 & pids+=($!)
}
probe() {  # ctr role...
  local ctr="$1"; shift
  for _ in $(seq 1 90); do
    if buildah run --isolation chroot --network host "${env_args[@]}" "$ctr" -- \
        python /usr/local/bin/kibamail-probe "$@"; then return 0; fi
    sleep 2
  done
  echo "smoke: $* never became healthy; log:"; cat "$WORK/${ctr}.log"; return 1
}
start_role kibamail api; api_ctr="$ctr"
start_role kibamail mta; mta_ctr="$ctr"
probe "$api_ctr" api
probe "$mta_ctr" mta
echo "smoke: image user: $(buildah run --isolation chroot "$api_ctr" -- id -u)"
buildah run --isolation chroot "$api_ctr" -- sh -c 'command -v gcc cc make uv pip || echo "no build tools"'
echo "smoke: ok ($TAG: api and mta healthy)"
