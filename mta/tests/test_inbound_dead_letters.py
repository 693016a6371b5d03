"""An inbound report the MTA cannot parse is set aside in the dead-letter store, not dropped."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import redis.asyncio
from aiosmtpd.smtp import Envelope, Session

from kibamail.contracts import Topic
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from mta.config import load_config
from mta.inbound import DEAD_LETTER_GROUP, INBOUND_SOURCE, InboundProcessor

pytestmark = pytest.mark.integration


class BrokenParser:
    """Stands in for the report worker pool: the parse blows up as a parser bug would."""

    async def run(self, fn: Any, *args: Any, seconds: float, keepalive: Any) -> Any:
        raise ValueError("boundary never closed")

    def close(self) -> None:
        return None


class FakeServer:
    def _reset_timeout(self) -> None:
        return None


def envelope_for(data: bytes) -> Envelope:
    envelope = Envelope()
    envelope.mail_from = "mailer-daemon@remote.example"
    envelope.rcpt_tos = ["bounces@mta.kibamail.local"]
    envelope.original_content = data
    return envelope


async def test_an_unparseable_report_is_dead_lettered_before_the_answer(
    test_settings: Settings, redis_service: str
) -> None:
    client = redis.asyncio.Redis.from_url(test_settings.redis.url)
    processor = InboundProcessor(test_settings, load_config(test_settings.mta.policy_file), client)
    processor.pool.close()
    processor.pool = BrokenParser()  # type: ignore[assignment]
    marker = b"Content-Type: multipart/report; boundary=never-closed-7f3a\r\n\r\n--never"
    try:
        before = await client.xlen(RedisKeys.event_outbox(DEAD_LETTER_GROUP))
        reply = await processor.handle_DATA(
            FakeServer(),  # type: ignore[arg-type]
            Session(loop=None),  # type: ignore[arg-type]
            envelope_for(marker),
        )
        assert reply.startswith("250 ") and "kept for review" in reply
        assert await client.xlen(RedisKeys.event_outbox(DEAD_LETTER_GROUP)) == before + 1
        newest: Any = await client.xrevrange(RedisKeys.event_outbox(DEAD_LETTER_GROUP), count=1)
        [(_id, fields)] = newest
        assert fields[b"topic"] == Topic.DEAD_LETTER.value.encode()
        letter = orjson.loads(fields[b"value"])
        assert letter["source_topic"] == INBOUND_SOURCE
        assert letter["reason"].startswith("unparseable inbound report: boundary never closed")
        assert letter["payload"].encode() == marker
    finally:
        await client.aclose()


async def test_without_redis_the_sender_is_asked_to_retry(test_settings: Settings) -> None:
    dead = redis.asyncio.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    processor = InboundProcessor(test_settings, load_config(test_settings.mta.policy_file), dead)
    processor.pool.close()
    processor.pool = BrokenParser()  # type: ignore[assignment]
    try:
        reply = await processor.handle_DATA(
            FakeServer(),  # type: ignore[arg-type]
            Session(loop=None),  # type: ignore[arg-type]
            envelope_for(b"garbage"),
        )
        assert reply.startswith("451 4.3.0")
    finally:
        await dead.aclose()
