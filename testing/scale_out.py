"""A scaled-out Kibamail on one machine: N MTA and M API processes behind a real HAProxy,
a Bytewax cluster of P `kibamail pipelines` processes, all on free loopback ports.

Used by tests/test_scale_out.py. Each process is started like its production role
(``kibamail mta``, ``kibamail api``, ``kibamail pipelines`` with ``addresses``/``process_id``,
each with its own state dir as on its own host), registered in one ``Stack`` (PID files,
logs, SIGKILL by process group, stop by PID). HAProxy runs
``testing/scale_out_haproxy.cfg``: PROXY v2 towards the MTAs (which trust only it), HTTP
towards the APIs.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import string
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from kibamail.settings import REPO_ROOT, Settings
from local_stack.services import kibamail_spec
from local_stack.stack import ServiceSpec, Stack, StackError, free_port, tcp_open

TEMPLATE = Path(__file__).with_name("scale_out_haproxy.cfg")
# Dataflows of `kibamail pipelines` (pipelines.run.flow_builders): each is its own Bytewax
# cluster on the address's port + the flow's index.
FLOWS = 3


def policy_file(path: Path, *, claim_idle_seconds: float, per_second: int, burst: int) -> Path:
    """The shipped policy chain with what a scale-out behind HAProxy changes: the
    submission listener trusts only the proxy (PROXY v2), a dead process's entries are
    reclaimed after ``claim_idle_seconds``, and the per-team rate is the test's budget.
    In-doubt deliveries stay ``assume_delivered`` (exactly once toward the receiver)."""
    text = (REPO_ROOT / "mta" / "config" / "policies.toml").read_text()
    replacements = [
        (r"claim_idle_seconds = \d+", f"claim_idle_seconds = {claim_idle_seconds}"),
        (r'in_doubt = "\w+"', 'in_doubt = "assume_delivered"'),
        (r"submission = \[\]", 'submission = ["127.0.0.1"]'),
        (r"per_second = 100\n", f"per_second = {per_second}\n"),
        (r"burst = 200\n", f"burst = {burst}\n"),
    ]
    for pattern, value in replacements:
        text, found = re.subn(pattern, value, text, count=1)
        if not found:
            raise StackError(f"shipped policies.toml has no {pattern!r} any more")
    path.write_text(text)
    return path


def port_run(length: int) -> int:
    """A free port whose next ``length - 1`` ports are free too (a Bytewax cluster address:
    each flow of `kibamail pipelines` listens on the address's port + its index)."""
    for _ in range(200):
        port = free_port()
        if all(_free(port + i) for i in range(1, length)):
            return port
    raise StackError("no run of free loopback ports found")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class Role:
    """One process of a role: its service name, settings and start spec."""

    name: str
    settings: Settings
    spec: ServiceSpec


@dataclass
class ScaleOut:
    """The processes of one scaled-out platform; ``start()`` then ``stop()`` (by PID)."""

    base: Settings
    state_dir: Path
    mtas: int = 3
    apis: int = 2
    pipelines: int = 2
    submission_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    roles: dict[str, Role] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.stack = Stack(self.state_dir / "stack")
        for i in range(self.mtas):
            mta = self.base.mta.model_copy(
                update={
                    "hostname": f"mta{i}.scale.kibamail.test",
                    "submission_port": free_port(),
                    "smtps_port": free_port(),
                    "inbound_port": free_port(),
                    "metrics_port": free_port(),
                }
            )
            settings = self._own_host(f"mta{i}", mta=mta)
            spec = kibamail_spec(settings, f"mta{i}", ["mta"], mta.metrics_port, "/metrics")
            self.roles[f"mta{i}"] = Role(f"mta{i}", settings, spec)
        for i in range(self.apis):
            api = self.base.api.model_copy(update={"port": free_port(), "workers": 1})
            settings = self._own_host(f"api{i}", api=api)
            spec = kibamail_spec(settings, f"api{i}", ["api"], api.port, "/healthz")
            self.roles[f"api{i}"] = Role(f"api{i}", settings, spec)
        addresses = [f"127.0.0.1:{port_run(FLOWS)}" for _ in range(self.pipelines)]
        for i in range(self.pipelines):
            pipelines = self.base.pipelines.model_copy(
                update={
                    "addresses": addresses,
                    "process_id": i,
                    "metrics_port": free_port(),
                    "recovery_dir": self.state_dir / "bytewax-recovery",  # the shared volume
                }
            )
            settings = self._own_host(f"pipelines{i}", pipelines=pipelines)
            port = pipelines.metrics_port
            spec = kibamail_spec(settings, f"pipelines{i}", ["pipelines"], port, "/metrics")
            own = int(addresses[i].rsplit(":", 1)[1])
            spec.ports += [own + shift for shift in range(FLOWS)]
            self.roles[f"pipelines{i}"] = Role(f"pipelines{i}", settings, spec)

    def _own_host(self, name: str, **sections: object) -> Settings:
        """Settings of one process: its own state dir (TLS files, metrics), as on a host."""
        stack = self.base.stack.model_copy(update={"state_dir": self.state_dir / name})
        return self.base.model_copy(update={**sections, "stack": stack})

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def names(self, role: str) -> list[str]:
        return [name for name in self.roles if name.rstrip("0123456789") == role]

    def haproxy_config(self) -> Path:
        mta_servers = [
            f"    server {name} 127.0.0.1:{role.settings.mta.submission_port} "
            f"check port {role.settings.mta.metrics_port}"
            for name, role in self.roles.items()
            if name.startswith("mta")
        ]
        api_servers = [
            f"    server {name} 127.0.0.1:{role.settings.api.port} check"
            for name, role in self.roles.items()
            if name.startswith("api")
        ]
        text = string.Template(TEMPLATE.read_text()).substitute(
            submission_port=self.submission_port,
            api_port=self.api_port,
            mta_servers="\n".join(mta_servers),
            api_servers="\n".join(api_servers),
        )
        path = self.state_dir / "haproxy.cfg"
        path.write_text(text)
        return path

    def haproxy_spec(self) -> ServiceSpec:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        ports = [self.submission_port, self.api_port]
        return ServiceSpec(
            name="haproxy",
            argv=[binary, "-db", "-f", str(self.haproxy_config())],
            ports=ports,
            health=lambda: all(tcp_open(port) for port in ports),
            timeout_seconds=20,
        )

    def start(self, extra: list[ServiceSpec] | None = None) -> None:
        """Every process, concurrently (each waits for its own health check), then HAProxy.
        Pipelines process 0 prepares the shared recovery dir; the others wait for it."""
        specs = [*(extra or []), *(role.spec for role in self.roles.values())]
        with ThreadPoolExecutor(max_workers=len(specs)) as pool:
            for future in [pool.submit(self.stack.start, spec) for spec in specs]:
                future.result()
        self.stack.start(self.haproxy_spec())

    def kill(self, name: str) -> None:
        """SIGKILL the process group of one role process (a host losing the process)."""
        self.stack.kill(name)

    def restart(self, name: str) -> int:
        return self.stack.start(self.roles[name].spec)

    def pid(self, name: str) -> int | None:
        return self.stack.running_pid(name)

    def stop(self) -> None:
        """Stop everything this object started, by recorded PID (proxy first, infra last)."""
        order = ["haproxy", *self.names("api"), *self.names("mta"), *self.names("pipelines")]
        self.stack.stop_all(order=order)

    def log_tail(self, name: str, lines: int = 30) -> str:
        return self.stack.tail_log(name, lines)


class ReplyDelay:
    """A loopback TCP relay in front of the sink: the MTA's bytes go through at once, the
    sink's replies ``delay`` seconds late, like an MX far away. The sink has read (and
    recorded) a message long before its 250 reaches the MTA, so an MTA killed meanwhile
    dies with deliveries in flight whose dot the receiver already has: the in-doubt case."""

    def __init__(self, target_port: int, delay: float) -> None:
        self.target_port, self.delay = target_port, delay
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None

    def start(self) -> ReplyDelay:
        self._thread.start()
        serve = asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self._server = asyncio.run_coroutine_threadsafe(serve, self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return

        async def upstream() -> None:
            with contextlib.suppress(OSError):
                while data := await reader.read(65536):
                    up_writer.write(data)
                    await up_writer.drain()
            up_writer.close()  # after everything the MTA sent, even if it died

        async def downstream() -> None:
            with contextlib.suppress(OSError):
                while data := await up_reader.read(65536):
                    await asyncio.sleep(self.delay)
                    writer.write(data)
                    await writer.drain()
            writer.close()

        await asyncio.gather(upstream(), downstream())
