"""A real 3-master Redis Cluster on loopback for the cluster tests (fixture ``redis_cluster``).

Three ``redis-server --cluster-enabled yes`` processes with their own data dirs and the
shipped durability (append-only file, fsync before every reply), joined by ``redis-cli
--cluster create`` with no replicas; startup is bounded and every process is stopped by
its PID. The tests point ``RedisSettings(cluster=True)`` at ``url`` (any master: the
clients discover the others).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kibamail.settings import RedisSettings
from local_stack.stack import free_port

MASTERS = 3
START_TIMEOUT_SECONDS = 30.0
BUS_PORT_OFFSET = 10000  # Redis's cluster bus listens on port + 10000


class ClusterStartError(RuntimeError):
    pass


@dataclass
class RedisClusterHandle:
    """A running cluster: its master ports, the settings to use and a client factory."""

    ports: list[int]
    processes: list[subprocess.Popen[bytes]] = field(repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}"

    @property
    def settings(self) -> RedisSettings:
        return RedisSettings(url=self.url, cluster=True, durability="aof_always")

    def client(self, **kwargs: Any) -> Any:
        """A sync RedisCluster client (close it when done)."""
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(self.url, **kwargs)

    def flush(self) -> None:
        """Empty every master (FLUSHALL on each node, by port)."""
        import redis

        for port in self.ports:
            with redis.Redis(port=port) as node:
                node.flushall()

    def master_of_slot(self, slot: int) -> int:
        """The port of the master that serves ``slot``."""
        import redis

        with redis.Redis(port=self.ports[0]) as node:
            for start, end, master, *_ in node.execute_command("CLUSTER SLOTS"):
                if int(start) <= slot <= int(end):
                    return int(master[1])
        raise LookupError(f"slot {slot} is not served")

    def keys_per_master(self) -> dict[int, int]:
        """DBSIZE of each master, by port."""
        import redis

        sizes = {}
        for port in self.ports:
            with redis.Redis(port=port) as node:
                sizes[port] = int(node.dbsize())
        return sizes


def _bus_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port + BUS_PORT_OFFSET))
        except OSError:
            return False
    return True


def _cluster_port() -> int:
    for _ in range(100):
        port = free_port()
        if port + BUS_PORT_OFFSET <= 65535 and _bus_free(port):
            return port
    raise ClusterStartError("no loopback port with a free cluster-bus port")


def _wait_until(predicate: Any, deadline: float, what: str) -> None:
    while not predicate():
        if time.monotonic() > deadline:
            raise ClusterStartError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _answers(port: int) -> bool:
    import redis

    try:
        with redis.Redis(port=port, socket_timeout=0.5) as node:
            return bool(node.ping())
    except redis.RedisError:
        return False


def _state_ok(ports: list[int]) -> bool:
    import redis

    for port in ports:
        with redis.Redis(port=port, socket_timeout=0.5) as node:
            info = node.execute_command("CLUSTER INFO")  # redis-py parses it to a dict
            state = info.get("cluster_state") if isinstance(info, dict) else None
            if state not in ("ok", b"ok"):
                return False
    return True


_CREATE_ARGS = ("--cluster-replicas", "0", "--cluster-yes")


def _node_args(port: int, data_dir: Path) -> list[str]:
    """One master: cluster mode, the shipped durability (AOF fsynced before each reply)."""
    options = {
        "bind": "127.0.0.1",
        "port": str(port),
        "dir": str(data_dir),
        "cluster-enabled": "yes",
        "cluster-config-file": "nodes.conf",
        "cluster-node-timeout": "5000",
        "appendonly": "yes",
        "appendfsync": "always",
        "save": "",
        "daemonize": "no",
        "protected-mode": "yes",
    }
    return [arg for name, value in options.items() for arg in (f"--{name}", value)]


def start_cluster(state_dir: Path, masters: int = MASTERS) -> RedisClusterHandle:
    """Start and join ``masters`` nodes; raises ClusterStartError (after stopping what
    started) unless the cluster reports ``cluster_state:ok`` within the time bound."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        raise ClusterStartError("redis-server/redis-cli not installed")
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    ports = [_cluster_port() for _ in range(masters)]
    handle = RedisClusterHandle(ports=ports, processes=[])
    try:
        for port in ports:
            data_dir = state_dir / f"redis-cluster-{port}"
            data_dir.mkdir(parents=True, exist_ok=True)
            with (data_dir / "server.log").open("ab") as log:  # the child keeps its copy
                handle.processes.append(
                    subprocess.Popen(
                        [server, *_node_args(port, data_dir)],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        for port in ports:
            _wait_until(lambda p=port: _answers(p), deadline, f"redis-server on {port}")
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), *_CREATE_ARGS],
            check=True,
            capture_output=True,
            timeout=max(1.0, deadline - time.monotonic()),
        )
        _wait_until(lambda: _state_ok(ports), deadline, "cluster_state:ok")
    except BaseException:
        stop_cluster(handle)
        raise
    return handle


def stop_cluster(handle: RedisClusterHandle) -> None:
    """Terminate each node by its PID, then kill what did not exit."""
    for process in handle.processes:
        if process.poll() is None:
            process.terminate()
    for process in handle.processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
