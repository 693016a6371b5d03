"""Correlation dataflow: MTA status events joined with who sent the message and why.

``smtp_messages_statuses`` -> parse (bad input -> dead letter with the reason) -> one
pipelined MGET of the messageId -> MessageMapping keys per batch -> CorrelatedMessageEvent
on ``clickhouse_smtp_messages``. Misses are retried with bounded delay (see mapping.py),
then dead-lettered with their reason. The output keeps the input's ``event_id``, so a
replay after a crash produces the same rows, which the sink deduplicates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from operator import itemgetter
from typing import Any

import bytewax.operators as op
import orjson
from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from kibamail.contracts import (
    ContractError,
    CorrelatedMessageEvent,
    Topic,
    dead_letter,
)
from kibamail.settings import Settings
from pipelines.kafka_io import Chunk, OutChunk, RawBatch, RawMessage
from pipelines.mapping import (
    Mapping,
    MappingLookup,
    MappingRetryLogic,
    Pending,
    RedisFactory,
    is_pending,
    shard_of,
)
from pipelines.metrics import (
    DEAD_LETTERS,
    ERRORS,
    EVENTS_IN,
    EVENTS_OUT,
    MAPPING_RETRIES,
)
from pipelines.status_parse import STATUS_FIELDS, parse_canonical_batch, parse_statuses

FLOW = "correlation"
SinkItem = KafkaSinkMessage[bytes | None, bytes]

# CorrelatedMessageEvent = the status event's fields, then these (taken from a Mapping).
JOINED_FIELDS = tuple(CorrelatedMessageEvent.model_fields)[len(STATUS_FIELDS) :]
if tuple(CorrelatedMessageEvent.model_fields)[: len(STATUS_FIELDS)] != STATUS_FIELDS or (
    Mapping._fields[1:] != JOINED_FIELDS
):
    raise TypeError("CorrelatedMessageEvent must be MessageStatusEvent + the Mapping's fields")


MESSAGE_ID = itemgetter("message_id")
EVENT_TEAM = itemgetter("team_id")


def _team_of(value: bytes) -> str:
    """The team of a parked status payload, only to find its mapping key: a parked payload
    was parsed and validated when it first arrived, and is parsed again with the batch it
    is joined in ('' when unreadable: no mapping is found)."""
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError:
        return ""
    team = event.get("team_id", "") if type(event) is dict else ""
    return team if type(team) is str else ""


MAPPING_TEAM = itemgetter(0)  # Mapping.team_id
DUMPS_UTC = partial(orjson.dumps, option=orjson.OPT_UTC_Z)
ALL_BUT_LAST = itemgetter(slice(None, -1))


def joined_rows(events: list[dict[str, Any]], mappings: list[Any]) -> list[bytes]:
    """``serialize(CorrelatedMessageEvent(...))`` of each event with its mapping's fields.

    The event's JSON without its closing brace, plus the mapping's fields as JSON (once
    per distinct mapping object: ``get_many`` returns one per distinct value), joined in
    C-level loops (``map``): no model and no bytecode per event. A test pins the bytes to
    the contract's serialization.
    """
    distinct = dict(zip(map(id, mappings), mappings, strict=True))
    tails = {
        key: b"," + DUMPS_UTC(dict(zip(JOINED_FIELDS, mapping[1:], strict=True)))[1:]
        for key, mapping in distinct.items()
    }
    heads = map(ALL_BUT_LAST, map(DUMPS_UTC, events))
    return list(map(bytes.__add__, heads, map(tails.__getitem__, map(id, mappings))))


def to_dead_letter(topic: str, key: bytes | None, value: bytes | None, reason: str) -> SinkItem:
    cause = reason.split(":", 1)[0][:40]
    DEAD_LETTERS.labels(FLOW, cause).inc()
    return KafkaSinkMessage(key, dead_letter(topic, value, reason), topic=Topic.DEAD_LETTER.value)


def mismatch_reason(event: dict[str, Any], mapping: Mapping) -> str:
    return (
        f"team mismatch: event team {event['team_id']!r} but message "
        f"{event['message_id']!r} belongs to team {mapping.team_id!r}"
    )


def flatten(batch: list[Any]) -> tuple[list[str], list[bytes | None], list[bytes | None]]:
    """Topics, keys and values of a batch of RawBatch / RawMessage items, column-wise."""
    topics: list[str] = []
    keys: list[bytes | None] = []
    values: list[bytes | None] = []
    for item in batch:
        if isinstance(item, RawBatch):
            topics += [item.topic] * len(item.values)
            keys += item.keys
            values += item.values
        elif isinstance(item, RawMessage):
            topics.append(item.topic)
            keys.append(item.key)
            values.append(item.value)
        else:
            ERRORS.labels(FLOW, "kafka").inc()
    return topics, keys, values


class Correlator:
    """The batch step and the retry resolver of the correlation flow.

    Per input batch: one parse pass (status_parse), one MGET, and the joined rows as
    ONE OutChunk, each row being ``serialize(CorrelatedMessageEvent(...))`` built from
    the event's dict without a model object per event.
    """

    def __init__(self, lookup: MappingLookup, shards: int) -> None:
        self.lookup = lookup
        self._shards = shards

    def on_batch(self, batch: list[Any]) -> list[OutChunk | list[SinkItem] | Pending]:
        topics, keys, values = flatten(batch)
        EVENTS_IN.labels(FLOW).inc(len(values))
        dead: list[SinkItem] = []
        events = parse_canonical_batch(values)
        if events is not None:  # the usual batch: every payload canonical and valid
            where: Sequence[int] = range(len(events))
        else:
            events, where = [], []
            for index, result in enumerate(parse_statuses(values)):
                if type(result) is dict:
                    events.append(result)
                    where.append(index)
                else:
                    reason = str(result)
                    dead.append(to_dead_letter(topics[index], keys[index], values[index], reason))
        message_ids = list(map(MESSAGE_ID, events))
        mappings = self.lookup.get_many(list(map(EVENT_TEAM, events)), message_ids)
        out: list[OutChunk | list[SinkItem] | Pending] = []
        all_found = set(map(type, mappings)) <= {Mapping}
        if all_found and list(map(MAPPING_TEAM, mappings)) == list(  # type: ignore[arg-type]
            map(EVENT_TEAM, events)
        ):  # every mapping there, every team right: join column-wise, no per-event bytecode
            out_values = joined_rows(events, mappings)
            out_keys: list[bytes | None] = list(map(str.encode, message_ids))
            pending: list[Pending] = []
        else:
            out_keys, out_values, pending = self._join_each(
                events, where, mappings, topics, keys, values, dead
            )
        if pending:
            MAPPING_RETRIES.labels(FLOW).inc(len(pending))
        EVENTS_OUT.labels(FLOW, Topic.CLICKHOUSE_MESSAGES.value).inc(len(out_values))
        if out_values:
            out.append(OutChunk(Topic.CLICKHOUSE_MESSAGES.value, out_keys, out_values))
        if dead:
            out.append(dead)
        return out + pending

    def _join_each(
        self,
        events: list[dict[str, Any]],
        where: Sequence[int],
        mappings: list[Mapping | ContractError | None],
        topics: list[str],
        keys: list[bytes | None],
        values: list[bytes | None],
        dead: list[SinkItem],
    ) -> tuple[list[bytes | None], list[bytes], list[Pending]]:
        """Batches with misses, unreadable mappings or team mismatches: each event is
        sorted out here, and the joinable ones are joined together in one call."""
        joinable: list[dict[str, Any]] = []
        joined_mappings: list[Mapping] = []
        pending: list[Pending] = []
        for index, event, mapping in zip(where, events, mappings, strict=True):
            if type(mapping) is Mapping and mapping.team_id == event["team_id"]:
                joinable.append(event)
                joined_mappings.append(mapping)
            elif mapping is None:
                message_id = event["message_id"]
                topic = topics[index] or Topic.MESSAGE_STATUSES.value
                value = values[index] or b""
                shard = shard_of(message_id, self._shards)
                pending.append(Pending(shard, topic, keys[index], value, message_id, 0, 0.0))
            else:
                reason = str(mapping) if isinstance(mapping, ContractError) else ""
                reason = reason or mismatch_reason(event, mapping)  # type: ignore[arg-type]
                dead.append(to_dead_letter(topics[index], keys[index], values[index], reason))
        out_keys: list[bytes | None] = list(map(str.encode, map(MESSAGE_ID, joinable)))
        return out_keys, joined_rows(joinable, joined_mappings), pending

    def resolve_pending(self, pending: list[Pending]) -> tuple[list[Chunk], list[int]]:
        """The due misses in one MGET; those found now are parsed and joined together
        and leave as one OutChunk (plus one list of dead letters), not one item each."""
        teams = [_team_of(p.value) for p in pending]
        mappings = self.lookup.get_many(teams, [p.message_id for p in pending])
        missing = [index for index, mapping in enumerate(mappings) if mapping is None]
        if len(missing) == len(pending):
            return [], missing
        found = [index for index, mapping in enumerate(mappings) if mapping is not None]
        payloads = [pending[index].value for index in found]
        events = parse_canonical_batch(payloads) or parse_statuses(payloads)
        joinable: list[dict[str, Any]] = []
        joined_mappings: list[Mapping] = []
        dead: list[SinkItem] = []
        for index, event in zip(found, events, strict=True):
            item, mapping = pending[index], mappings[index]
            if type(event) is dict and type(mapping) is Mapping:
                if mapping.team_id == event["team_id"]:
                    joinable.append(event)
                    joined_mappings.append(mapping)
                    continue
                reason = mismatch_reason(event, mapping)
            else:
                reason = str(event if isinstance(event, ContractError) else mapping)
            dead.append(to_dead_letter(item.topic, item.key, item.value, reason))
        out: list[Chunk] = []
        if joinable:
            out_keys: list[bytes | None] = list(map(str.encode, map(MESSAGE_ID, joinable)))
            rows = joined_rows(joinable, joined_mappings)
            out.append(OutChunk(Topic.CLICKHOUSE_MESSAGES.value, out_keys, rows))
        if dead:
            out.append(dead)
        return out, missing

    def give_up(self, pending: Pending, waited_seconds: float) -> Chunk:
        return [
            to_dead_letter(
                pending.topic,
                pending.key,
                pending.value,
                f"mapping missing: no message mapping for message_id {pending.message_id!r} "
                f"after {pending.attempts + 1} lookups over {waited_seconds:g}s",
            )
        ]


def build_flow(
    settings: Settings,
    *,
    source: Source[Any] | None = None,
    sink: Sink[Any] | None = None,
    redis_factory: RedisFactory | None = None,
    clock: Callable[[], float] | None = None,
) -> Dataflow:
    """The correlation dataflow; tests pass TestingSource/TestingSink and a fake Redis.

    Its output items are OutChunks or lists of Kafka messages (a few per input batch).
    """
    from kibamail.clients import redis_client
    from pipelines.kafka_io import ChunkedKafkaSink, kafka_source

    tuning = settings.pipelines.tuning
    correlator = Correlator(
        MappingLookup(redis_factory or (lambda: redis_client(settings))), tuning.retry_shards
    )
    flow = Dataflow(FLOW)
    statuses = op.input(
        "statuses",
        flow,
        source or kafka_source(settings, [Topic.MESSAGE_STATUSES.value], FLOW, columnar=True),
    )
    outcomes = op.flat_map_batch("parse_and_lookup", statuses, correlator.on_batch)
    split = op.branch("missing_mapping", outcomes, is_pending)
    keyed = op.key_on("retry_shard", split.trues, lambda pending: pending.shard)
    extra = {"clock": clock} if clock else {}
    retried = op.stateful_batch(
        "mapping_retry",
        keyed,
        lambda state: MappingRetryLogic(
            correlator, tuning.mapping_retry_delays_seconds, state, **extra
        ),
    )
    done = op.merge("all_out", split.falses, op.key_rm("unkey_retried", retried))
    op.output("kafka_out", done, sink or ChunkedKafkaSink(settings))
    return flow
