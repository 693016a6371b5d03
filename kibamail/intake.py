"""The MTA's intake contract: how the API, broadcast workers and SMTP server hand over mail.

A message is accepted once XADD to the submission stream returns: Redis (AOF on) holds
it until a delivery worker acknowledges it. Everything after that belongs to the MTA.

This is the only module that writes a submission stream entry or a message mapping.
Python callers use ``queue_on_pipeline``/``submit``/``submit_async``; Lua scripts that
must hand over atomically with their own checks (idempotency, suppression, the
broadcast guard, the schedule, retries) prepend ``QUEUE_SUBMISSION_LUA`` and call its
``queue_submission`` with the keys and arguments of ``submission_record``.

Message ids: ``OutboundMessage.message_id`` is the platform's own id (never a client's
Message-ID alone, which two teams may share), a Message-ID header value WITHOUT angle
brackets (e.g. ``0b6f...@mail.customer.com``); every status event, the sink's records
and the message mapping use exactly that form. The rendered ``data`` carries it as
``X-Kibamail-Message-ID: <...>`` when the client supplied its own Message-ID, else as
``Message-ID: <...>``; ``message_id_of`` reads it back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from kibamail.contracts import MessageMapping, OutboundMessage, serialize
from kibamail.redis_keys import RedisKeys

# Message mappings outlive any retry window and late open/click events.
MAPPING_TTL_SECONDS = 45 * 24 * 3600

# Carries the platform id when the client's own Message-ID header is kept as it was.
PLATFORM_ID_HEADER = "X-Kibamail-Message-ID"

# The stream entry's fields, in order (OutboundMessage.to_stream_fields builds them).
STREAM_FIELDS = ("meta", "data")

# queue_submission(mapping_key, stream_key, mapping_json, mapping_ttl, meta, data):
# SET the mapping with its TTL unless mapping_json is empty, then XADD the entry;
# returns the entry id. Scripts prepend this (like api.services.ratelimit's bucket).
QUEUE_SUBMISSION_LUA = f"""
local function queue_submission(mapping_key, stream_key, mapping_json, mapping_ttl, meta, data)
  if mapping_json and mapping_json ~= '' then
    redis.call('SET', mapping_key, mapping_json, 'EX', mapping_ttl)
  end
  return redis.call('XADD', stream_key, '*', '{STREAM_FIELDS[0]}', meta, '{STREAM_FIELDS[1]}', data)
end
"""


@dataclass(frozen=True)
class SubmissionRecord:
    """What one hand-over writes: the mapping (optional) and the stream entry."""

    mapping_key: str
    mapping_json: bytes
    meta: bytes
    data: bytes
    stream_key: str = RedisKeys.SUBMISSION_STREAM
    mapping_ttl: int = MAPPING_TTL_SECONDS

    def keys(self) -> list[str]:
        """KEYS for queue_submission, in its order: mapping, stream."""
        return [self.mapping_key, self.stream_key]

    def args(self) -> list[Any]:
        """ARGV for queue_submission, in its order: mapping JSON, TTL, meta, data."""
        return [self.mapping_json, self.mapping_ttl, self.meta, self.data]

    def stream_fields(self) -> dict[str, bytes]:
        return dict(zip(STREAM_FIELDS, (self.meta, self.data), strict=True))


def submission_record(
    message: OutboundMessage, mapping: MessageMapping | None = None
) -> SubmissionRecord:
    """The record of one message; an absent mapping is an empty JSON (not written)."""
    fields = message.to_stream_fields()
    if tuple(fields) != STREAM_FIELDS:
        raise TypeError(f"stream fields changed to {tuple(fields)}; update STREAM_FIELDS")
    return SubmissionRecord(
        mapping_key=RedisKeys.message_mapping(message.message_id),
        mapping_json=serialize(mapping) if mapping is not None else b"",
        meta=fields["meta"],
        data=fields["data"],
    )


def queue_on_pipeline(
    pipe: Any, message: OutboundMessage, mapping: MessageMapping | None = None
) -> None:
    """Add the mapping SET + stream XADD to a (transactional) pipeline; XADD is queued last
    unless the caller appends more commands (the SMTP server adds its features event)."""
    record = submission_record(message, mapping)
    if record.mapping_json:
        pipe.set(record.mapping_key, record.mapping_json, ex=record.mapping_ttl)
    pipe.xadd(record.stream_key, record.stream_fields())


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


_ID_HEADERS = re.compile(
    rb"^(x-kibamail-message-id|message-id):[ \t]*<?([^>\r\n]+)>?", re.IGNORECASE | re.MULTILINE
)


def message_id_of(data: bytes) -> str:
    """The platform id of a rendered message: X-Kibamail-Message-ID, else Message-ID,
    without angle brackets ('' if neither is in the header section)."""
    head = data.split(b"\r\n\r\n", 1)[0]
    fallback = ""
    for match in _ID_HEADERS.finditer(head):
        value = match.group(2).strip().decode("utf-8", "replace")
        if len(match.group(1)) > len(b"message-id"):
            return value
        fallback = fallback or value
    return fallback


def original_message_id(headers: Any) -> str:
    """The same preference for parsed headers (an email.message.Message or a mapping
    with case-insensitive .get, e.g. the original headers quoted in a DSN)."""
    value = headers.get(PLATFORM_ID_HEADER) or headers.get("Message-ID") or ""
    return str(value).strip().strip("<>").strip()
