"""messageId -> MessageMapping lookups: one pipelined MGET per batch, bounded retries.

A status or an open can overtake the mapping write (the MTA's status producer and the
intake's Redis write race). Misses are parked in keyed state (sharded, snapshotted by
Bytewax recovery), looked up again after each configured delay, and handed to the
flow's ``give_up`` once the delays are exhausted; nothing is dropped silently.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from itertools import chain
from operator import attrgetter
from typing import Any, Generic, NamedTuple, Protocol, TypeGuard, TypeVar

import orjson
from bytewax.operators import StatefulBatchLogic

from kibamail.contracts import ContractError, MessageMapping
from kibamail.redis_batching import is_cluster_client
from kibamail.redis_keys import RedisKeys

log = logging.getLogger(__name__)

Out = TypeVar("Out")

RedisFactory = Callable[[], Any]


class Pending(NamedTuple):
    """A payload whose mapping was missing; ``attempts`` lookups done, next at ``due``."""

    shard: str
    topic: str
    key: bytes | None
    value: bytes
    message_id: str
    attempts: int
    due: float


class MappingLookup:
    """Batched mapping reads; waits out Redis outages (backpressure) instead of failing."""

    def __init__(self, redis_factory: RedisFactory, max_backoff_seconds: float = 5.0) -> None:
        self._factory = redis_factory
        self._client: Any = None
        self._max_backoff = max_backoff_seconds
        self.round_trips = 0

    def _redis(self) -> Any:
        if self._client is None:
            self._client = self._factory()
        return self._client

    def get_many(
        self, team_ids: Sequence[str], message_ids: Sequence[str]
    ) -> list[Mapping | ContractError | None]:
        """One MGET for the whole batch (a cluster: one per master, redis-py's non-atomic
        MGET: the keys carry their teams' slot tags); a mapping that does not parse is a
        ContractError. An event's team names the key, so a message of another team is
        not found under it (kibamail.redis_keys.message_mapping)."""
        if not message_ids:
            return []
        import redis

        keys = list(map(_mapping_key, team_ids, message_ids))
        backoff = 0.05
        while True:
            try:
                client = self._redis()
                raw = (
                    client.mget_nonatomic(keys) if is_cluster_client(client) else client.mget(keys)
                )
                self.round_trips += 1
                break
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("redis unavailable for mapping lookups (%s); retrying", exc)
                time.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
        # Mappings repeat (a team's transactional mail, a broadcast's variants): parse each
        # distinct value once per batch, then look the results up in one C-level map.
        parsed = {value: parse_mapping("", value) for value in set(raw) if value is not None}
        results: list[Mapping | ContractError | None] = list(map(parsed.get, raw))
        if len(parsed) != sum(type(m) is Mapping for m in parsed.values()):
            for index, result in enumerate(results):  # errors name their own message id
                if isinstance(result, ContractError):
                    results[index] = parse_mapping(message_ids[index], raw[index])
        return results


def _mapping_key(team_id: str, message_id: str) -> str:
    try:
        return RedisKeys.message_mapping(team_id, message_id)
    except ValueError:  # a team id with braces names no mapping (and no other team's)
        return RedisKeys.message_mapping("", message_id)


class Mapping(NamedTuple):
    """The mapping fields the flows read (a MessageMapping, minus per-event model cost)."""

    team_id: str
    broadcast_id: str
    contact_id: str
    variant_id: str
    tags: list[str]
    api_key_id: str = ""
    smtp_credential_id: str = ""


def parse_mapping(message_id: str, value: bytes) -> Mapping | ContractError:
    """Plain mappings (strings and a list of strings, as the intake writes them) are read
    directly; anything else goes through MessageMapping's validator (and its errors)."""
    try:
        data = orjson.loads(value)
        if type(data) is dict:
            team, tags = data.get("team_id"), data.get("tags", [])
            broadcast = data.get("broadcast_id", "")
            contact, variant = data.get("contact_id", ""), data.get("variant_id", "")
            key, credential = data.get("api_key_id", ""), data.get("smtp_credential_id", "")
            if (
                type(team) is str
                and team
                and type(broadcast) is str
                and type(contact) is str
                and type(variant) is str
                and type(key) is str
                and type(credential) is str
                and type(tags) is list
                and (not tags or all(type(tag) is str for tag in tags))
            ):
                return Mapping(team, broadcast, contact, variant, tags, key, credential)
        model = MessageMapping.model_validate_json(value)
        return Mapping(
            model.team_id,
            model.broadcast_id,
            model.contact_id,
            model.variant_id,
            model.tags,
            model.api_key_id,
            model.smtp_credential_id,
        )
    except ValueError as exc:
        return ContractError(f"unreadable mapping for {message_id}: {exc}")


class Resolver(Protocol[Out]):
    """What a flow does with payloads once their mapping is (or is not) found."""

    lookup: MappingLookup

    def resolve_pending(self, pending: list[Pending]) -> tuple[list[Out], list[int]]:
        """Outputs for those now resolvable, plus the indexes still missing a mapping."""
        ...

    def give_up(self, pending: Pending, waited_seconds: float) -> Out: ...


def shard_of(message_id: str, shards: int) -> str:
    """Stable across processes (unlike hash()), so a resumed flow keys state the same."""
    import zlib

    return str(zlib.crc32(message_id.encode()) % max(1, shards))


def is_pending(item: object) -> TypeGuard[Pending]:
    """Branch predicate for misses; as a TypeGuard it types the branch's trues as Pending."""
    return isinstance(item, Pending)


class MappingRetryLogic(StatefulBatchLogic[Pending, Out, tuple[Pending, ...]], Generic[Out]):
    """Per shard: park misses, look them up again in one MGET when due, give up at the end.

    One FIFO per lookup count: every item entering queue ``n`` waits ``delays[n]`` from a
    later "now", so each queue is in due order and the due items are its head. A notify
    takes just those (no scan of everything parked, however many are waiting), and the
    snapshot keeps the plain tuple of Pending (recovery stores stay readable).
    """

    def __init__(
        self,
        resolver: Resolver[Out],
        delays: Sequence[float],
        state: tuple[Pending, ...] | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._resolver = resolver
        self._delays = list(delays) or [0.0]
        self._clock = clock
        self._queues: list[deque[Pending]] = [deque() for _ in self._delays]
        now = clock()
        for pending in sorted(state or (), key=attrgetter("due")):
            # A resumed item waits no longer than the current schedule says (its snapshot
            # may come from a longer one), which also keeps every queue in due order.
            level = min(max(pending.attempts, 1), len(self._delays)) - 1
            due = min(pending.due, now + self._delays[level])
            self._queues[level].append(pending._replace(due=due))

    def on_batch(self, values: list[Pending]) -> tuple[list[Out], bool]:
        due = self._clock() + self._delays[0]
        self._queues[0].extend(p._replace(attempts=1, due=due) for p in values)
        return [], StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[Out], bool]:
        now = self._clock()
        due: list[Pending] = []
        for queue in self._queues:
            while queue and queue[0].due <= now:
                due.append(queue.popleft())
        if not due:
            return [], StatefulBatchLogic.RETAIN
        outputs, missing = self._resolver.resolve_pending(due)
        for index in missing:
            pending = due[index]
            if pending.attempts >= len(self._delays):
                outputs.append(self._resolver.give_up(pending, sum(self._delays)))
            else:
                delay = self._delays[pending.attempts]
                self._queues[pending.attempts].append(
                    pending._replace(attempts=pending.attempts + 1, due=now + delay)
                )
        if any(self._queues):
            return outputs, StatefulBatchLogic.RETAIN
        return outputs, StatefulBatchLogic.DISCARD

    def notify_at(self) -> datetime | None:
        heads = [queue[0].due for queue in self._queues if queue]
        return datetime.fromtimestamp(min(heads), UTC) if heads else None

    def snapshot(self) -> tuple[Pending, ...]:
        return tuple(chain.from_iterable(self._queues))
