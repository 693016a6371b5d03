"""Start a real gateway process for tests and benchmarks (free loopback port, own data dir).

``start_gateway`` runs the production entry point (``python -m console warehouse serve``)
unless a knob only the module entry point has is needed (``max_body_bytes``).
"""

from __future__ import annotations

import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kibamail.settings import ClickHouseSettings, Settings, StackSettings, settings_to_env
from local_stack.services import warehouse_spec
from local_stack.stack import ServiceSpec, Stack, free_port


@dataclass
class RunningGateway:
    stack: Stack
    name: str
    settings: Settings

    @property
    def port(self) -> int:
        return self.settings.clickhouse.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database(self) -> str:
        return self.settings.clickhouse.database

    def client(self, **kwargs: Any) -> Any:
        """A clickhouse-connect HTTP client bound to the gateway's database by default."""
        import clickhouse_connect

        kwargs.setdefault("database", self.database)
        kwargs.setdefault("password", self.settings.clickhouse.password)
        return clickhouse_connect.get_client(host="127.0.0.1", port=self.port, **kwargs)

    def stop(self) -> None:
        self.stack.stop(self.name)


def _ping(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


def gateway_settings(state_dir: Path, *, database: str = "kibamail_test", password: str = "",
                     data_dir: Path | None = None) -> Settings:  # fmt: skip
    return Settings(
        environment="development",  # an empty password (auth off) is allowed only here
        clickhouse=ClickHouseSettings(
            port=free_port(),
            data_dir=data_dir or state_dir / "chdb",
            database=database,
            password=password,
        ),
        stack=StackSettings(state_dir=state_dir),
    )


def start_gateway(
    state_dir: Path,
    *,
    name: str = "warehouse",
    database: str = "kibamail_test",
    password: str = "",
    max_body_bytes: int | None = None,
    data_dir: Path | None = None,
) -> RunningGateway:
    settings = gateway_settings(state_dir, database=database, password=password, data_dir=data_dir)
    stack = Stack(state_dir)
    if max_body_bytes is None and name == "warehouse":
        spec = warehouse_spec(settings)
    else:
        port = settings.clickhouse.port
        argv = [sys.executable, "-m", "local_stack.clickhouse_gateway"]
        if max_body_bytes is not None:
            argv += ["--max-body-bytes", str(max_body_bytes)]
        spec = ServiceSpec(
            name=name,
            argv=argv,
            env=settings_to_env(settings),
            ports=[port],
            health=lambda: _ping(port),
            timeout_seconds=60,
        )
    stack.start(spec)
    return RunningGateway(stack, spec.name, settings)
