"""The MTA's hiredis command packer writes exactly the bytes redis-py's own packer does."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError

from mta.redis_pool import mta_redis_client, pool_size, with_hiredis_packing

COMMANDS: list[tuple[Any, ...]] = [
    ("SET", "k", "value", "EX", 30),
    ("HSET", b"h", "f", 0.1, "g", 1.5e20, "h", -7, "i", 2**70, "j", float("inf")),
    ("XADD", "outbox", "*", "topic", "statuses", "value", b"\x00\xff" * 5000),
    ("SADD", "s", "é", memoryview(b"mv"), bytearray(b"ba")),
    ("CONFIG GET", "maxmemory"),
    (b"CLIENT SETNAME", b"mta"),
    ("MULTI",),
    ("EXEC",),
]


def _python_bytes(commands: list[tuple[Any, ...]]) -> bytes:
    return b"".join(bytes(c) for c in Connection().pack_commands(commands))


@pytest.mark.parametrize("base", [Connection, SSLConnection, UnixDomainSocketConnection])
def test_same_bytes_as_redis_py(base: type) -> None:
    fast = with_hiredis_packing(base)()
    assert issubclass(type(fast), base)
    for command in COMMANDS:
        assert b"".join(fast.pack_command(*command)) == _python_bytes([command])
    packed = fast.pack_commands(COMMANDS * 3)
    assert b"".join(packed) == _python_bytes(COMMANDS * 3)


def test_unencodable_arguments_are_data_errors_as_before() -> None:
    fast = with_hiredis_packing(Connection)()
    unencodable: list[Any] = [True, None, object()]
    for bad in unencodable:
        with pytest.raises(DataError):
            Connection().pack_command("SET", "k", bad)
        with pytest.raises(DataError):
            fast.pack_command("SET", "k", bad)


def test_pool_size_from_settings(test_settings: Any) -> None:
    mta = test_settings.mta
    assert pool_size(test_settings) == 2 * mta.delivery_concurrency + 20
    sized = test_settings.model_copy(
        update={"mta": mta.model_copy(update={"redis_max_connections": 7})}
    )
    assert pool_size(sized) == 7
    assert mta.listen_backlog >= 4096


@pytest.mark.integration
def test_waiting_pool_hands_a_released_connection_to_the_waiter(
    test_settings: Any, redis_client: Any
) -> None:
    """Pool of 1: the second caller waits, gets the connection the first releases (not a
    timeout), and 60 concurrent commands on a pool of 2 all succeed."""
    sized = test_settings.model_copy(
        update={
            "mta": test_settings.mta.model_copy(
                update={"redis_max_connections": 1, "redis_pool_timeout_seconds": 10.0}
            )
        }
    )

    async def scenario() -> list[Any]:
        client = mta_redis_client(sized)
        pool = client.connection_pool
        first = await pool.get_connection()
        waiting = asyncio.create_task(pool.get_connection())
        for _ in range(5):
            await asyncio.sleep(0)
        assert not waiting.done() and pool._condition._waiters
        await pool.release(first)
        second = await waiting
        assert second is first
        await pool.release(second)
        pool.max_connections = 2
        await client.set("pool-test", "v")
        values = await asyncio.gather(*(client.get("pool-test") for _ in range(60)))
        await client.aclose()
        return values

    assert asyncio.run(scenario()) == [b"v"] * 60
