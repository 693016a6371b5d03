"""The local embedded stack: start processes, record PIDs, health-check, stop by PID.

Used by ``kibamail up/down/demo`` and by the test harness (with its own ports and
state dir, so tests run while ``make up`` is running). Every child logs to
``<state_dir>/logs/<name>.log`` and has its PID in ``<state_dir>/pids/<name>.pid``.
We only ever signal PIDs we recorded, and only if the process still looks like ours.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HealthCheck = Callable[[], bool]


class StackError(RuntimeError):
    """A readable reason the stack could not start (port in use, unhealthy, missing binary)."""


@dataclass
class ServiceSpec:
    name: str
    argv: list[str]
    health: HealthCheck
    ports: list[int] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    timeout_seconds: float = 60.0
    cwd: Path | None = None


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


# Ports handed out by free_port() come from below the kernel's ephemeral range
# (32768-60999 on Linux): a port picked by "bind to 0" is in that range, so any outgoing
# connection may take it before the service binds it. Never hand out the same one twice.
_PORT_RANGE = (20000, 32700)
_handed_out: set[int] = set()


def _bindable(port: int, kind: socket.SocketKind) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A loopback port free for both TCP and UDP, outside the ephemeral range."""
    for _ in range(1000):
        port = random.randint(*_PORT_RANGE)
        if port in _handed_out:
            continue
        if _bindable(port, socket.SOCK_STREAM) and _bindable(port, socket.SOCK_DGRAM):
            _handed_out.add(port)
            return port
    raise StackError("no free loopback port found in 20000-32700")


def tcp_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class Stack:
    """A set of processes sharing one state dir."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.pid_dir = state_dir / "pids"
        self.log_dir = state_dir / "logs"
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def pid_file(self, name: str) -> Path:
        return self.pid_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def running_pid(self, name: str) -> int | None:
        path = self.pid_file(name)
        if not path.exists():
            return None
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        pid = int(record["pid"])
        if _pid_alive(pid) and record.get("argv0", "") in _cmdline(pid):
            return pid
        return None

    def start(self, spec: ServiceSpec) -> int:
        """Start one service and wait until healthy; raise StackError with the cause otherwise."""
        existing = self.running_pid(spec.name)
        if existing is not None:
            if spec.health():
                return existing
            raise StackError(f"{spec.name}: pid {existing} is running but not healthy")
        for port in spec.ports:
            if not port_is_free(port):
                raise StackError(
                    f"{spec.name}: port {port} on 127.0.0.1 is already in use "
                    f"(another process holds it; stop it or set a different port)"
                )
        if shutil.which(spec.argv[0]) is None and not Path(spec.argv[0]).exists():
            raise StackError(f"{spec.name}: executable not found: {spec.argv[0]}")
        log = self.log_file(spec.name).open("ab")
        env = {**os.environ, **spec.env}
        proc = subprocess.Popen(
            spec.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=spec.cwd,
            start_new_session=True,
        )
        log.close()
        self._procs[spec.name] = proc
        self.pid_file(spec.name).write_text(
            json.dumps({"pid": proc.pid, "argv0": Path(spec.argv[0]).name, "argv": spec.argv})
        )
        deadline = time.monotonic() + spec.timeout_seconds
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = self.tail_log(spec.name)
                self.pid_file(spec.name).unlink(missing_ok=True)
                raise StackError(
                    f"{spec.name}: exited with status {proc.returncode} during start-up; "
                    f"last log lines:\n{tail}"
                )
            try:
                if spec.health():
                    return proc.pid
            except Exception:
                pass
            time.sleep(0.1)
        self.stop(spec.name)
        raise StackError(
            f"{spec.name}: not healthy within {spec.timeout_seconds:.0f} s; "
            f"last log lines:\n{self.tail_log(spec.name)}"
        )

    def tail_log(self, name: str, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file(name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, name: str, timeout: float = 10.0) -> bool:
        """SIGTERM, then SIGKILL after timeout; only the PID we recorded, its process group."""
        pid = self.running_pid(name)
        self.pid_file(name).unlink(missing_ok=True)
        proc = self._procs.pop(name, None)
        if pid is None:
            return False
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            except PermissionError:
                os.kill(pid, sig)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if proc is not None and proc.poll() is not None:
                    return True
                if proc is None and not _pid_alive(pid):
                    return True
                time.sleep(0.05)
        return True

    def kill(self, name: str) -> None:
        """kill -9 a service (crash tests); leaves the pid file for restart logic to replace."""
        pid = self.running_pid(name)
        if pid is not None:
            os.killpg(pid, signal.SIGKILL)
            proc = self._procs.get(name)
            if proc is not None:
                proc.wait(timeout=10)

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.pid_dir.glob("*.pid"))

    def stop_all(self, order: list[str] | None = None) -> list[str]:
        """Stop everything recorded, in the given order first (reverse start order)."""
        stopped = []
        names = list(order or []) + [n for n in self.names() if n not in (order or [])]
        for name in names:
            if self.stop(name):
                stopped.append(name)
        return stopped


def python_cmd(*args: str) -> list[str]:
    """Run a `kibamail` subcommand with this interpreter (works without the venv on PATH)."""
    return [sys.executable, "-m", "console", *args]
