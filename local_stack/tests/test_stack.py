"""The stack manager: PID records, health checks, readable failures, clean stops."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from kibamail.settings import Settings, settings_to_env
from local_stack.stack import ServiceSpec, Stack, StackError, free_port, tcp_open

pytestmark = pytest.mark.integration


def http_server_spec(port: int, name: str = "web") -> ServiceSpec:
    return ServiceSpec(
        name=name,
        argv=[sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        ports=[port],
        health=lambda: tcp_open(port),
        timeout_seconds=20,
    )


def test_start_records_pid_and_stop_ends_the_process(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    port = free_port()
    pid = stack.start(http_server_spec(port))
    assert stack.running_pid("web") == pid
    assert tcp_open(port)
    assert stack.stop("web")
    assert stack.running_pid("web") is None
    assert not tcp_open(port)


def test_starting_twice_reuses_the_running_process(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    port = free_port()
    first = stack.start(http_server_spec(port))
    try:
        assert stack.start(http_server_spec(port)) == first
    finally:
        stack.stop_all()


def test_port_in_use_fails_fast_with_the_port_named(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(StackError, match=f"port {port} .* already in use"):
            Stack(tmp_path).start(http_server_spec(port))


def test_process_that_exits_reports_its_log(tmp_path: Path) -> None:
    spec = ServiceSpec(
        name="crasher",
        argv=[sys.executable, "-c", "import sys; print('boom: bad config'); sys.exit(3)"],
        health=lambda: False,
        timeout_seconds=10,
    )
    with pytest.raises(StackError, match=r"exited with status 3(.|\n)*boom: bad config"):
        Stack(tmp_path).start(spec)


def test_unhealthy_service_times_out_and_is_stopped(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    spec = ServiceSpec(
        name="sleeper",
        argv=[sys.executable, "-c", "import time; time.sleep(60)"],
        health=lambda: False,
        timeout_seconds=1,
    )
    with pytest.raises(StackError, match="not healthy within 1 s"):
        stack.start(spec)
    assert stack.running_pid("sleeper") is None


def test_missing_executable_is_named(tmp_path: Path) -> None:
    spec = ServiceSpec(name="ghost", argv=["/nonexistent/ghostd"], health=lambda: True)
    with pytest.raises(StackError, match="executable not found: /nonexistent/ghostd"):
        Stack(tmp_path).start(spec)


def test_settings_round_trip_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    custom = settings.model_copy(
        update={"mta": settings.mta.model_copy(update={"dns_servers": ["127.0.0.2"]})}
    )
    for key, value in settings_to_env(custom).items():
        monkeypatch.setenv(key, value)
    assert Settings() == custom
