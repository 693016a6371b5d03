"""Haraka 3.3.4 as the acceptance baseline: installed with npm, configured, started, measured.

Same work as the Kibamail run: STARTTLS, AUTH PLAIN (auth/flat_file), accept, and
enqueue durably — Haraka writes authenticated (relayed) mail to its outbound disk
queue; delivery is disabled (``outbound.ini disabled=true``) so only acceptance is timed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kibamail.settings import REPO_ROOT
from local_stack.stack import ServiceSpec, Stack, free_port, tcp_open

from .report import RunMeter

HARAKA_VERSION = "3.3.4"
INSTALL_DIR = REPO_ROOT / ".stack" / "bench" / "haraka"
USER, PASSWORD = "bench-user", "bench-password-123"


def install_haraka() -> Path:
    """npm install Haraka once into .stack/bench/haraka; returns the haraka executable."""
    binary = INSTALL_DIR / "node_modules" / ".bin" / "haraka"
    if binary.exists():
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm not installed; Haraka baseline unavailable")
    INSTALL_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", f"Haraka@{HARAKA_VERSION}"],
        cwd=INSTALL_DIR,
        check=True,
        capture_output=True,
        timeout=900,
    )
    return binary


def configure(binary: Path, home: Path, port: int) -> None:
    from mta.tls import ensure_self_signed

    if not (home / "config").exists():
        subprocess.run([str(binary), "-i", str(home)], check=True, capture_output=True)
    config = home / "config"
    cert, key = ensure_self_signed(home / "tls", "haraka.bench.local")
    shutil.copy(cert, config / "tls_cert.pem")
    shutil.copy(key, config / "tls_key.pem")
    (config / "smtp.ini").write_text(f"listen=127.0.0.1:{port}\nnodes=1\n")
    (config / "me").write_text("haraka.bench.local\n")
    (config / "plugins").write_text("tls\nauth/flat_file\n")
    (config / "tls.ini").write_text("key=tls_key.pem\ncert=tls_cert.pem\n")
    (config / "auth_flat_file.ini").write_text(
        f"[core]\nmethods=PLAIN,LOGIN\n\n[users]\n{USER}={PASSWORD}\n"
    )
    (config / "outbound.ini").write_text("disabled=true\n\n[main]\ndisabled=true\n")
    (config / "log.ini").write_text("[main]\nlevel=warn\n")


def haraka_accept_run(
    stack: Stack,
    state_dir: Path,
    args: argparse.Namespace,
    accept_run: Callable[[int, tuple[str, str], argparse.Namespace, RunMeter], Any],
) -> dict[str, Any]:
    try:
        binary = install_haraka()
    except (RuntimeError, subprocess.SubprocessError) as exc:
        return {"error": f"Haraka unavailable: {exc}"}
    home = state_dir / "haraka"
    port = free_port()
    configure(binary, home, port)
    queue = home / "queue"
    if queue.exists():
        for p in queue.iterdir():
            if p.is_file():
                p.unlink()
    stack.start(
        ServiceSpec(
            name="haraka",
            argv=[str(binary), "-c", str(home)],
            ports=[port],
            health=lambda: tcp_open(port),
            timeout_seconds=60,
        )
    )
    meter = RunMeter()
    meter.add("haraka", stack.running_pid("haraka"))
    meter.add_self("load_generator")
    try:
        load = accept_run(port, (USER, PASSWORD), args, meter)
        report = meter.stop()
    finally:
        stack.stop("haraka")
    queue = home / "queue"
    if queue.exists():  # count only this round's files
        queued = sum(1 for p in queue.iterdir() if p.is_file())
        for p in queue.iterdir():
            if p.is_file():
                p.unlink()
    else:
        queued = 0
    summary = {**load.summary(), "queued_on_disk": queued, "version": HARAKA_VERSION}
    # every message of the round and of the 50-message warm-up on its disk queue
    summary["complete"] = (
        load.failed == 0
        and load.session_errors == 0
        and load.sent == args.messages
        and queued == args.messages + 50
    )
    summary.update(report, cpu_ms_per_accepted=meter.cpu_ms_per(load.sent))
    if load.first_error:
        summary["first_error"] = load.first_error
    return summary
