"""Many sessions authenticating at once on one MTA: more than its Redis pool has
connections. They wait for a connection (BlockingConnectionPool); none gets the 500
``MaxConnectionsError`` that 1,781 of 2,000 sessions got in bench.mta --mode connections.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from pathlib import Path
from typing import Any

import pytest

from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from local_stack.stack import tcp_open
from mta.credentials import create_smtp_credential
from mta.redis_pool import pool_size

from .conftest import start_mta
from .helpers import queued, with_policy, write_policy

pytestmark = pytest.mark.integration

SESSIONS = 200
POOL = 4


async def _reply(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    lines: list[bytes] = []
    while True:
        line = await reader.readline()
        if not line:
            return 0, b"".join(lines)
        lines.append(line)
        if line[3:4] != b"-":
            return int(line[:3]), b"".join(lines)


async def _burst(port: int, credential: tuple[str, str]) -> tuple[list[bytes], list[bytes]]:
    """Every session greeted first; then all AUTH + one message together."""
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    token = base64.b64encode(f"\0{credential[0]}\0{credential[1]}".encode())
    go = asyncio.Event()
    refusals: list[bytes] = []
    accepted: list[bytes] = []

    async def session(ready: asyncio.Future[None]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
        try:
            assert (await _reply(reader))[0] == 220
            writer.write(b"EHLO burst.test\r\n")
            assert (await _reply(reader))[0] == 250
            ready.set_result(None)
            await go.wait()
            steps = [
                (b"AUTH PLAIN " + token, 235),
                (b"MAIL FROM:<a@sender.example>", 250),
                (b"RCPT TO:<b@example.org>", 250),
                (b"DATA", 354),
                (b"From: a@sender.example\r\nTo: b@example.org\r\nSubject: s\r\n\r\nHi.\r\n.", 250),
            ]
            for command, expected in steps:
                writer.write(command + b"\r\n")
                code, text = await _reply(reader)
                if code != expected:
                    refusals.append(command[:4] + b": " + text)
                    return
            accepted.append(text)
            writer.write(b"QUIT\r\n")
            await _reply(reader)
        finally:
            writer.close()

    loop = asyncio.get_running_loop()
    opened = [loop.create_future() for _ in range(SESSIONS)]
    tasks = [asyncio.create_task(session(ready)) for ready in opened]
    await asyncio.wait_for(asyncio.gather(*opened), 120)
    go.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 180)
    return refusals, accepted


@pytest.fixture
def burst_settings(test_settings: Settings, tmp_path: Path) -> Settings:
    # One client address for all sessions: the per-IP cap above the burst; idle long enough.
    policy = write_policy(tmp_path / "policies.toml", per_ip=SESSIONS + 10, idle_timeout=120)
    return with_policy(test_settings, policy, redis_max_connections=POOL)


def test_more_concurrent_auths_than_pool_connections_none_refused(
    burst_settings: Settings, redis_client: Any, kafka_service: str
) -> None:
    assert pool_size(burst_settings) == POOL < SESSIONS
    redis_client.set(RedisKeys.domain_ready("team-burst", "sender.example"), "1")
    credential = create_smtp_credential(redis_client, "team-burst")
    before = queued(redis_client)
    _thread, stopper = start_mta(burst_settings, delivery=False)
    try:
        deadline = time.monotonic() + 10
        while not tcp_open(burst_settings.mta.smtps_port) and time.monotonic() < deadline:
            time.sleep(0.05)
        refusals, accepted = asyncio.run(_burst(burst_settings.mta.smtps_port, credential))
    finally:
        stopper()
    assert refusals == []
    assert len(accepted) == SESSIONS
    assert queued(redis_client) - before == SESSIONS
