"""The MTA's intake contract: how the API, broadcast workers and SMTP server hand over mail.

A message is accepted once XADD to the submission stream returns: Redis (AOF on) holds
it until a delivery worker acknowledges it. Everything after that belongs to the MTA.

Message ids: ``OutboundMessage.message_id`` is the Message-ID header value WITHOUT angle
brackets (e.g. ``0b6f...@mail.customer.com``); every status event, the sink's records and
the message mapping use exactly that form. The rendered ``data`` must carry the same
value in its ``Message-ID: <...>`` header.
"""

from __future__ import annotations

from typing import Any

from kibamail.contracts import MessageMapping, OutboundMessage, serialize
from kibamail.redis_keys import RedisKeys

# Message mappings outlive any retry window and late open/click events.
MAPPING_TTL_SECONDS = 45 * 24 * 3600


def queue_on_pipeline(
    pipe: Any, message: OutboundMessage, mapping: MessageMapping | None = None
) -> None:
    """Add the mapping SET + stream XADD to a (transactional) pipeline; XADD is queued last
    unless the caller appends more commands (the SMTP server adds its features event)."""
    if mapping is not None:
        pipe.set(
            RedisKeys.message_mapping(message.message_id),
            serialize(mapping),
            ex=MAPPING_TTL_SECONDS,
        )
    pipe.xadd(RedisKeys.SUBMISSION_STREAM, message.to_stream_fields())


def submit(redis: Any, message: OutboundMessage, mapping: MessageMapping | None = None) -> str:
    """Queue one message durably (sync redis client); returns the stream entry id."""
    pipe = redis.pipeline(transaction=True)
    queue_on_pipeline(pipe, message, mapping)
    entry_id = pipe.execute()[-1]
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


async def submit_async(
    redis: Any, message: OutboundMessage, mapping: MessageMapping | None = None
) -> str:
    """Same as submit() for redis.asyncio clients (the API's request path)."""
    pipe = redis.pipeline(transaction=True)
    queue_on_pipeline(pipe, message, mapping)
    entry_id = (await pipe.execute())[-1]
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
