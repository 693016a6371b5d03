"""Container health probe: one script for every role of the Kibamail image.

The role is the command the container runs (PID 1's argv, e.g. ``kibamail mta``), so the
image needs one HEALTHCHECK, and Kubernetes/Nomad can call the same script with the role
as argument. Only the standard library: it runs every 15 s and must start fast. Ports and
hosts come from the same KIBAMAIL_* variables the process reads (defaults as in
kibamail/settings.py). Exit 0 healthy, 1 unhealthy (Docker/OCI convention).
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _local(host: str) -> str:
    """A wildcard bind address is reached on loopback."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def role_from_argv(argv: list[str]) -> str:
    """``kibamail api worker`` -> ``api worker``; options are dropped."""
    words = [a for a in argv if not a.startswith("-")]
    for index, word in enumerate(words):
        if word.endswith("kibamail") or word == "console":
            words = words[index + 1 :]
            break
    else:
        return ""
    if words[:1] == ["api"] and len(words) > 1:
        return f"api {words[1]}"
    return words[0] if words else ""


def endpoint(role: str) -> str | None:
    """The URL whose 200 means this role is serving; None for roles with no endpoint."""
    if role == "api":
        host, port = _env("KIBAMAIL_API__HOST", "127.0.0.1"), _env("KIBAMAIL_API__PORT", "18000")
        return f"http://{_local(host)}:{port}/healthz"
    if role == "mta":
        host = _env("KIBAMAIL_MTA__METRICS_HOST", "127.0.0.1")
        return f"http://{_local(host)}:{_env('KIBAMAIL_MTA__METRICS_PORT', '19101')}/metrics"
    if role == "pipelines":
        host = _env("KIBAMAIL_PIPELINES__METRICS_HOST", "127.0.0.1")
        port = _env("KIBAMAIL_PIPELINES__METRICS_PORT", "19102")
        return f"http://{_local(host)}:{port}/metrics"
    if role == "dagster":
        return f"http://127.0.0.1:{_env('KIBAMAIL_DAGSTER__WEBSERVER_PORT', '13000')}/server_info"
    return None


def main(args: list[str]) -> int:
    if args:
        role = " ".join(args)
    else:
        try:
            raw = Path("/proc/1/cmdline").read_bytes()
        except OSError:
            raw = b""
        role = role_from_argv([part.decode() for part in raw.split(b"\0") if part])
    url = endpoint(role)
    if url is None:
        # Queue consumers (api worker/outbox/webhooks, flink) have no port: the container
        # runtime already restarts them when PID 1 exits; reaching here means it runs.
        print(f"role {role or '?'}: no endpoint, process alive")
        return 0
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            ok = response.status == 200
    except OSError as exc:
        print(f"role {role}: {url} unreachable: {exc}")
        return 1
    print(f"role {role}: {url} {'ok' if ok else 'not ok'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
