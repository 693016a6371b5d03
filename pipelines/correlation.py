"""Correlation dataflow: MTA status events joined with who sent the message and why.

``smtp_messages_statuses`` -> parse (bad input -> dead letter with the reason) -> one
pipelined MGET of the messageId -> MessageMapping keys per batch -> CorrelatedMessageEvent
on ``clickhouse_smtp_messages``. Misses are retried with bounded delay (see mapping.py),
then dead-lettered with their reason. The output keeps the input's ``event_id``, so a
replay after a crash produces the same rows, which the sink deduplicates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import bytewax.operators as op
import orjson
from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from kibamail.settings import Settings
from pipelines.config import PipelineTuning, get_tuning
from pipelines.contracts import (
    SUPPORTED_VERSIONS,
    ContractError,
    MessageStatusEvent,
    Topic,
    dead_letter,
    deserialize,
)
from pipelines.kafka_io import RawMessage
from pipelines.mapping import (
    Mapping,
    MappingLookup,
    MappingRetryLogic,
    Pending,
    RedisFactory,
    shard_of,
)
from pipelines.metrics import (
    DEAD_LETTERS,
    ERRORS,
    EVENTS_IN,
    EVENTS_OUT,
    MAPPING_RETRIES,
)

FLOW = "correlation"
SinkItem = KafkaSinkMessage[bytes | None, bytes]


def correlated_payload(event: MessageStatusEvent, mapping: Mapping) -> bytes:
    """CorrelatedMessageEvent JSON: the event's JSON with the mapping's fields appended.

    Same bytes a CorrelatedMessageEvent would serialize to (its fields are the status
    event's followed by these four), without building and re-validating one per event.
    """
    extra = orjson.dumps(
        {
            "broadcast_id": mapping.broadcast_id,
            "contact_id": mapping.contact_id,
            "variant_id": mapping.variant_id,
            "tags": mapping.tags,
        }
    )
    return event.__pydantic_serializer__.to_json(event)[:-1] + b"," + extra[1:]


def parse_status(raw: bytes) -> MessageStatusEvent:
    """Validate in one pass (JSON parsed in Rust); the contract's own path names the error."""
    try:
        event = MessageStatusEvent.model_validate_json(raw)
    except ValueError:
        return deserialize(MessageStatusEvent, raw)  # raises ContractError with the reason
    if event.event_version not in SUPPORTED_VERSIONS:
        return deserialize(MessageStatusEvent, raw)
    return event


def to_dead_letter(topic: str, key: bytes | None, value: bytes | None, reason: str) -> SinkItem:
    cause = reason.split(":", 1)[0][:40]
    DEAD_LETTERS.labels(FLOW, cause).inc()
    return KafkaSinkMessage(key, dead_letter(topic, value, reason), topic=Topic.DEAD_LETTER.value)


class Correlator:
    """The batch step and the retry resolver of the correlation flow."""

    def __init__(self, lookup: MappingLookup, shards: int) -> None:
        self.lookup = lookup
        self._shards = shards

    def _join(
        self, event: MessageStatusEvent, key: bytes | None, mapping: Any, topic: str, raw: bytes
    ) -> SinkItem:
        if isinstance(mapping, ContractError):
            return to_dead_letter(topic, key, raw, str(mapping))
        if mapping.team_id != event.team_id:
            return to_dead_letter(
                topic,
                key,
                raw,
                f"team mismatch: event team {event.team_id!r} but message "
                f"{event.message_id!r} belongs to team {mapping.team_id!r}",
            )
        return KafkaSinkMessage(
            event.message_id.encode(),
            correlated_payload(event, mapping),
            topic=Topic.CLICKHOUSE_MESSAGES.value,
        )

    def on_batch(self, batch: list[Any]) -> list[list[SinkItem] | Pending]:
        """Parse every message, then one MGET for all message ids of the batch.

        Returns the batch's outputs as ONE item (a list), plus one item per miss.
        """
        out: list[SinkItem] = []
        pending: list[Pending] = []
        parsed: list[tuple[MessageStatusEvent, RawMessage]] = []
        for msg in batch:
            if not isinstance(msg, RawMessage):
                ERRORS.labels(FLOW, "kafka").inc()
                continue
            try:
                parsed.append((parse_status(msg.value or b""), msg))
            except ContractError as exc:
                out.append(to_dead_letter(msg.topic or "", msg.key, msg.value, str(exc)))
        EVENTS_IN.labels(FLOW).inc(len(batch))
        mappings = self.lookup.get_many([event.message_id for event, _ in parsed])
        retries = 0
        for (event, msg), mapping in zip(parsed, mappings, strict=True):
            if mapping is None:
                retries += 1
                pending.append(
                    Pending(
                        shard_of(event.message_id, self._shards),
                        msg.topic or Topic.MESSAGE_STATUSES.value,
                        msg.key,
                        msg.value or b"",
                        event.message_id,
                        0,
                        0.0,
                    )
                )
            else:
                out.append(self._join(event, msg.key, mapping, msg.topic or "", msg.value or b""))
        if retries:
            MAPPING_RETRIES.labels(FLOW).inc(retries)
        EVENTS_OUT.labels(FLOW, Topic.CLICKHOUSE_MESSAGES.value).inc(len(parsed) - retries)
        return [out, *pending] if out else list(pending)

    def resolve_pending(self, pending: list[Pending]) -> tuple[list[SinkItem], list[int]]:
        mappings = self.lookup.get_many([p.message_id for p in pending])
        out: list[SinkItem] = []
        missing: list[int] = []
        for index, (item, mapping) in enumerate(zip(pending, mappings, strict=True)):
            if mapping is None:
                missing.append(index)
                continue
            event = deserialize(MessageStatusEvent, item.value)
            out.append(self._join(event, item.key, mapping, item.topic, item.value))
        return out, missing

    def give_up(self, pending: Pending, waited_seconds: float) -> SinkItem:
        return to_dead_letter(
            pending.topic,
            pending.key,
            pending.value,
            f"mapping missing: no message mapping for message_id {pending.message_id!r} "
            f"after {pending.attempts + 1} lookups over {waited_seconds:g}s",
        )


def build_flow(
    settings: Settings,
    *,
    source: Source[Any] | None = None,
    sink: Sink[list[SinkItem]] | None = None,
    redis_factory: RedisFactory | None = None,
    tuning: PipelineTuning | None = None,
    clock: Callable[[], float] | None = None,
) -> Dataflow:
    """The correlation dataflow; tests pass TestingSource/TestingSink and a fake Redis.

    Its output items are lists of Kafka messages (one per input batch).
    """
    from kibamail.clients import redis_client
    from pipelines.kafka_io import ChunkedKafkaSink, kafka_source

    tuning = tuning or get_tuning()
    correlator = Correlator(
        MappingLookup(redis_factory or (lambda: redis_client(settings))), tuning.retry_shards
    )
    flow = Dataflow(FLOW)
    statuses = op.input(
        "statuses",
        flow,
        source or kafka_source(settings, [Topic.MESSAGE_STATUSES.value], tuning, FLOW),
    )
    outcomes = op.flat_map_batch("parse_and_lookup", statuses, correlator.on_batch)
    split = op.branch("missing_mapping", outcomes, lambda item: isinstance(item, Pending))
    keyed = op.key_on("retry_shard", split.trues, lambda pending: pending.shard)
    extra = {"clock": clock} if clock else {}
    retried = op.stateful_batch(
        "mapping_retry",
        keyed,
        lambda state: MappingRetryLogic(
            correlator, tuning.mapping_retry_delays_seconds, state, **extra
        ),
    )
    resolved = op.map("as_chunks", op.key_rm("unkey_retried", retried), lambda item: [item])
    done = op.merge("all_out", split.falses, resolved)
    op.output("kafka_out", done, sink or ChunkedKafkaSink(settings))
    return flow
