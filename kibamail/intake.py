"""The MTA's intake contract: how the API, broadcast workers and SMTP server hand over mail.

A message is accepted once XADD to its team's submission stream (one per slot group,
kibamail.redis_keys) returns: Redis holds it until a
delivery worker acknowledges it. Everything after that belongs to the MTA. What "returns"
guarantees is ``RedisSettings.durability``: with ``aof_always`` (the shipped redis-server
config) the reply comes after the append-only file's fsync; with ``replica_wait`` the
writer also sends ``WAIT`` on the same connection (``submit``/``submit_async`` do;
pipelines built elsewhere append ``replica_wait_command`` and check its reply with
``check_replicated``) and refuses to acknowledge when too few replicas confirm.

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
from kibamail.redis_batching import ready
from kibamail.redis_keys import RedisKeys
from kibamail.settings import RedisSettings, get_settings

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
    stream_key: str  # the team's group stream: mapping and entry share the team's slot
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
        mapping_key=RedisKeys.message_mapping(message.team_id, message.message_id),
        mapping_json=serialize(mapping) if mapping is not None else b"",
        meta=fields["meta"],
        data=fields["data"],
        stream_key=RedisKeys.team_submission_stream(message.team_id),
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


class NotReplicated(RuntimeError):
    """WAIT saw fewer replicas than ``wait_replicas``: the write may not survive a failover,
    so it must not be acknowledged (SMTP 451 / HTTP 503; the client retries)."""


def replica_wait_command(durability: RedisSettings) -> tuple[str, int, int] | None:
    """The WAIT to send after the writes (same connection, outside MULTI), or None."""
    if durability.durability != "replica_wait":
        return None
    return ("WAIT", durability.wait_replicas, durability.wait_timeout_ms)


def check_replicated(acked: Any, durability: RedisSettings) -> None:
    """Raise NotReplicated unless WAIT's reply covers ``wait_replicas``."""
    if int(acked) < durability.wait_replicas:
        raise NotReplicated(
            f"{acked} of {durability.wait_replicas} replicas confirmed the write "
            f"within {durability.wait_timeout_ms} ms"
        )


def _durable_pipeline(
    redis: Any, message: OutboundMessage, mapping: MessageMapping | None, wait: tuple[Any, ...]
) -> Any:
    """MULTI, the record, EXEC, WAIT as one non-transactional pipeline: one connection (WAIT
    counts the writes of its own connection) and one round trip; WAIT inside MULTI would
    return at once."""
    pipe = redis.pipeline(transaction=False)
    pipe.execute_command("MULTI")
    queue_on_pipeline(pipe, message, mapping)
    pipe.execute_command("EXEC")
    pipe.execute_command(*wait)
    return pipe


def _exec_result(results: list[Any], durability: RedisSettings) -> Any:
    """The XADD's id from [MULTI, ..queued.., EXEC, WAIT] after checking WAIT's count."""
    check_replicated(results[-1], durability)
    exec_reply = results[-2]
    if not isinstance(exec_reply, list):  # EXECABORT: a queued command was refused
        raise RuntimeError(f"intake transaction aborted: {exec_reply!r}")
    return exec_reply[-1]


def _entry_id(entry_id: Any) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def submit(
    redis: Any,
    message: OutboundMessage,
    mapping: MessageMapping | None = None,
    *,
    durability: RedisSettings | None = None,
) -> str:
    """Queue one message durably (sync redis client); returns the stream entry id.
    ``durability`` defaults to the process settings' ``redis`` section."""
    durability = durability or get_settings().redis
    wait = replica_wait_command(durability)
    if wait is not None:
        pipe = _durable_pipeline(redis, message, mapping, wait)
        return _entry_id(_exec_result(pipe.execute(), durability))
    pipe = redis.pipeline(transaction=True)
    queue_on_pipeline(pipe, message, mapping)
    return _entry_id(pipe.execute()[-1])


async def submit_async(
    redis: Any,
    message: OutboundMessage,
    mapping: MessageMapping | None = None,
    *,
    durability: RedisSettings | None = None,
) -> str:
    """Same as submit() for redis.asyncio clients (the API's request path)."""
    durability = durability or get_settings().redis
    wait = replica_wait_command(durability)
    if wait is not None:
        pipe = _durable_pipeline(redis, message, mapping, wait)
        return _entry_id(_exec_result(await pipe.execute(), durability))
    await ready(redis)
    pipe = redis.pipeline(transaction=True)
    queue_on_pipeline(pipe, message, mapping)
    return _entry_id((await pipe.execute())[-1])


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
