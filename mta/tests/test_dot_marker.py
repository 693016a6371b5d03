"""The in-doubt marker is written when the final dot has left user space, not before.

A message larger than the socket's kernel buffer stays partly in the transport after the
write; under STARTTLS the rest sits in the socket transport beneath the TLS layer, which
the TLS transport's own buffer size leaves out. Marking then would report a message
delivered that a kill at that moment never sent (a loss); not marking at all would let
a kill after the flush mail it twice. Real SMTP over loopback, with and without TLS, on
asyncio's loop and on uvloop (the MTA's).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvloop

from mta.config import ShapingConfig
from mta.smtp_client import ConnectionPool, DataHooks
from testing.testnet import SinkConfig, SinkServer

pytestmark = pytest.mark.integration

BODY_BYTES = 24 * 1024 * 1024  # well past loopback's kernel send buffer


@pytest.fixture(params=[False, True], ids=["plain", "starttls"])
def big_sink(request: pytest.FixtureRequest) -> Iterator[SinkServer]:
    sink = SinkServer(config=SinkConfig(starttls=request.param)).start()
    yield sink
    sink.stop()


def big_message() -> bytes:
    line = b"x" * 76 + b"\r\n"
    head = (
        b"From: a@sender.example\r\nTo: big@example.org\r\nSubject: big\r\n"
        b"Message-ID: <big-1@sender.example>\r\n\r\n"
    )
    return head + line * (BODY_BYTES // len(line))


async def send_big(port: int) -> tuple[list[dict[str, Any]], list[str], Any]:
    pool = ConnectionPool("mta.test", port, connect_timeout=10, command_timeout=60)
    conns: list[Any] = []
    connect = pool._connect

    async def keep(*args: Any) -> Any:
        conns.append(await connect(*args))
        return conns[-1]

    pool._connect = keep  # type: ignore[method-assign,assignment]
    marks: list[dict[str, Any]] = []
    events: list[str] = []

    def before_dot(accepted: list[str]) -> Callable[[], None]:
        def mark() -> None:
            conn = conns[0]
            marks.append(
                {
                    "socket_unsent": conn.socket_transport.get_write_buffer_size(),
                    "top_unsent": conn.smtp.transport.get_write_buffer_size(),
                }
            )
            events.append("marked")

        return mark

    async def answered(accepted: list[str], code: int, text: str) -> None:
        events.append(f"answered {code}")

    shaping = ShapingConfig()
    result = await pool.send(
        group="generic",
        shaping=shaping,
        source_ip="127.0.0.1",
        address="127.0.0.1",
        mail_from="bounce@sender.example",
        rcpts=["big@example.org"],
        data=big_message(),
        hooks=DataHooks(before_dot, answered),
    )
    await pool.close()
    return marks, events, result


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_large_message_is_marked_once_after_its_dot_left_user_space(
    big_sink: SinkServer, loop: str
) -> None:
    run = uvloop.run if loop == "uvloop" else asyncio.run
    marks, events, result = run(send_big(big_sink.port))
    assert result.rcpts["big@example.org"].code == 250
    assert big_sink.delivered_counts()["big-1@sender.example"] == 1
    # Marked once, with nothing of the message left in either transport, before the answer.
    assert marks == [{"socket_unsent": 0, "top_unsent": 0}]
    assert events == ["marked", "answered 250"]
