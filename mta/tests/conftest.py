"""Fixtures: the test internet on the session's delivery/DNS ports, and an in-process MTA."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kibamail.settings import Settings
from testing.testnet import DnsServer, SinkConfig, SinkServer, Zone

from .helpers import with_policy, write_policy


@pytest.fixture
def sink(test_settings: Settings) -> Iterator[SinkServer]:
    server = SinkServer(
        port=test_settings.mta.delivery_port, config=SinkConfig(seed=7, keep_messages=True)
    ).start()
    yield server
    server.stop()


@pytest.fixture
def zone() -> Zone:
    return Zone(null_mx={"nullmx.example"}, nxdomain={"gone.example"})


@pytest.fixture
def dns_server(test_settings: Settings, zone: Zone) -> Iterator[DnsServer]:
    server = DnsServer(port=test_settings.mta.dns_port, zone=zone).start()
    yield server
    server.stop()


@dataclass
class RunningMta:
    settings: Settings
    stop: threading.Event


def start_mta(
    settings: Settings,
    listeners: bool = True,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop,
    delivery: bool = True,
) -> tuple[threading.Thread, Callable[[], None]]:
    """Run mta.main.serve on its own event loop thread (``kibamail mta`` itself runs on
    uvloop: pass ``uvloop.new_event_loop``); returns (thread, stopper). ``delivery=False``:
    listeners only, so queued entries stay in the stream for a test to read."""
    from mta.main import serve

    loop = loop_factory()
    ready = threading.Event()
    holder: dict[str, asyncio.Event] = {}

    def runner() -> None:
        asyncio.set_event_loop(loop)
        holder["stop"] = asyncio.Event()
        ready.set()
        loop.run_until_complete(
            serve(settings, holder["stop"], listeners=listeners, delivery=delivery)
        )
        loop.close()

    thread = threading.Thread(target=runner, daemon=True)
    thread.start()
    ready.wait(5)

    def stopper() -> None:
        loop.call_soon_threadsafe(holder["stop"].set)
        thread.join(30)

    return thread, stopper


@pytest.fixture
def mta_settings(test_settings: Settings, tmp_path: Path) -> Settings:
    return with_policy(test_settings, write_policy(tmp_path / "policies.toml"))


@pytest.fixture
def running_mta(
    mta_settings: Settings,
    redis_client: object,
    kafka_service: str,
    sink: SinkServer,
    dns_server: DnsServer,
) -> Iterator[Settings]:
    import time

    from local_stack.stack import tcp_open

    _thread, stopper = start_mta(mta_settings)
    for _ in range(100):
        if tcp_open(mta_settings.mta.submission_port):
            break
        time.sleep(0.05)
    yield mta_settings
    stopper()
