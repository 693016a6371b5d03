"""Fakes for unit tests: a dict-backed Redis that records its round trips."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from kibamail.contracts import MessageMapping, MessageStatus, MessageStatusEvent, serialize
from kibamail.redis_keys import RedisKeys
from pipelines.kafka_io import RawMessage


class FakeRedis:
    """Only what the flows use: MGET (one call = one round trip) and SET."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.mget_calls: list[int] = []
        self.appear_after_calls: dict[str, tuple[int, bytes]] = {}

    def set(self, key: str, value: bytes) -> None:
        self.data[key] = value

    def map(self, message_id: str, mapping: MessageMapping) -> None:
        """Where the intake writes it: under the mapping's own team."""
        self.data[RedisKeys.message_mapping(mapping.team_id, message_id)] = serialize(mapping)

    def map_later(
        self, message_id: str, mapping: MessageMapping, after_calls: int, under_team: str = ""
    ) -> None:
        """The mapping shows up only after this many MGETs (a slow intake), under its own
        team's key or, to play a corrupted store, under ``under_team``'s."""
        key = RedisKeys.message_mapping(under_team or mapping.team_id, message_id)
        self.appear_after_calls[key] = (after_calls, serialize(mapping))

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        self.mget_calls.append(len(keys))
        for key, (after, value) in list(self.appear_after_calls.items()):
            if len(self.mget_calls) > after:
                self.data[key] = value
                del self.appear_after_calls[key]
        return [self.data.get(k) for k in keys]


def source_message(topic: str, value: bytes, offset: int = 0) -> RawMessage:
    return RawMessage(topic, 0, offset, None, value)


T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def status_event(
    message_id: str, status: MessageStatus, team: str = "team-1", seconds: int = 0, **kw: Any
) -> MessageStatusEvent:
    return MessageStatusEvent(
        team_id=team,
        message_id=message_id,
        status=status,
        occurred_at=T0 + timedelta(seconds=seconds),
        recipient=f"{message_id}@example.com",
        recipient_domain="example.com",
        **kw,
    )


class FakePipeline:
    def __init__(self, redis: FakeRedis) -> None:
        self.redis = redis
        self.ops: list[Any] = []

    def set(self, key: str, value: bytes, nx: bool = False, ex: int | None = None) -> None:
        self.ops.append((key, value, nx))

    def execute(self) -> list[bool]:
        done = []
        for key, value, nx in self.ops:
            if nx and key in self.redis.data:
                done.append(False)
            else:
                self.redis.data[key] = value
                done.append(True)
        return done


def _pipeline(self: FakeRedis, transaction: bool = True) -> FakePipeline:
    return FakePipeline(self)


FakeRedis.pipeline = _pipeline  # type: ignore[attr-defined]
