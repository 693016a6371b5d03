"""Enrichment dataflow: opens and clicks -> geo, user agent, machine flag, first-per-message.

``smtp_email_opens`` / ``smtp_email_clicks`` -> parse (bad input -> dead letter) -> one
MGET of message mappings per batch (broadcast / contact / variant; misses retried like
correlation, then emitted without them rather than lost: the open itself is real) ->
geo (geoip2, optional) -> user agent (ua-parser) -> machine flags (Apple MPP, image
proxies, scanners; clicks on another link of the same message within seconds) ->
``is_first`` for the first human open / click of each message (keyed state, so a replay
after a crash decides the same) -> ``clickhouse_smtp_email_opens`` / ``_clicks``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple, cast

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import Sink

from kibamail.contracts import (
    ContractError,
    EmailClickEvent,
    EmailOpenEvent,
    EnrichedClickEvent,
    EnrichedOpenEvent,
    Topic,
    deserialize,
    serialize,
)
from kibamail.settings import PipelineTuning, Settings
from pipelines.correlation import SinkItem, to_dead_letter
from pipelines.kafka_io import RawMessage
from pipelines.machine import GeoLookup, machine_reason, parse_user_agent
from pipelines.mapping import (
    Mapping,
    MappingLookup,
    MappingRetryLogic,
    Pending,
    RedisFactory,
    is_pending,
    shard_of,
)
from pipelines.metrics import ERRORS, EVENTS_IN, EVENTS_OUT, MAPPING_RETRIES

FLOW = "enrichment"
Enriched = EnrichedOpenEvent | EnrichedClickEvent

ROUTES: dict[str, tuple[type[EmailOpenEvent], type[Enriched], Topic]] = {
    Topic.EMAIL_OPENS.value: (EmailOpenEvent, EnrichedOpenEvent, Topic.CLICKHOUSE_EMAIL_OPENS),
    Topic.EMAIL_CLICKS.value: (EmailClickEvent, EnrichedClickEvent, Topic.CLICKHOUSE_EMAIL_CLICKS),
}


class Enricher:
    """The batch step and the retry resolver of the enrichment flow."""

    def __init__(self, lookup: MappingLookup, geo: GeoLookup, shards: int) -> None:
        self.lookup = lookup
        self._geo = geo
        self._shards = shards

    def enrich(self, topic: str, event: EmailOpenEvent, mapping: Mapping | None) -> Enriched:
        _model, enriched_model, _out = ROUTES[topic]
        geo = self._geo.lookup(event.ip)
        agent = parse_user_agent(event.user_agent)
        reason = machine_reason(event.ip, event.user_agent)
        return enriched_model.model_construct(
            **event.__dict__,
            broadcast_id=mapping.broadcast_id if mapping else "",
            contact_id=mapping.contact_id if mapping else "",
            variant_id=mapping.variant_id if mapping else "",
            country=geo.country,
            city=geo.city,
            latitude=geo.latitude,
            longitude=geo.longitude,
            ua_client=agent.client,
            ua_os=agent.os,
            ua_device=agent.device,
            is_machine=bool(reason),
            machine_reason=reason,
            is_first=False,
        )

    def _joined(
        self, topic: str, key: bytes | None, raw: bytes, event: EmailOpenEvent, mapping: Any
    ) -> Enriched | SinkItem:
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
        return self.enrich(topic, event, mapping)

    def on_batch(self, batch: list[Any]) -> list[Enriched | SinkItem | Pending]:
        out: list[Enriched | SinkItem | Pending] = []
        parsed: list[tuple[EmailOpenEvent, RawMessage]] = []
        for msg in batch:
            if not isinstance(msg, RawMessage) or msg.topic not in ROUTES:
                ERRORS.labels(FLOW, "kafka").inc()
                continue
            try:
                parsed.append((deserialize(ROUTES[msg.topic][0], msg.value or b""), msg))
            except ContractError as exc:
                out.append(to_dead_letter(msg.topic, msg.key, msg.value, str(exc)))
        EVENTS_IN.labels(FLOW).inc(len(batch))
        mappings = self.lookup.get_many(
            [event.team_id for event, _ in parsed], [event.message_id for event, _ in parsed]
        )
        for (event, msg), mapping in zip(parsed, mappings, strict=True):
            raw = msg.value or b""
            if mapping is None:
                MAPPING_RETRIES.labels(FLOW).inc()
                shard = shard_of(event.message_id, self._shards)
                out.append(Pending(shard, msg.topic or "", msg.key, raw, event.message_id, 0, 0.0))
            else:
                out.append(self._joined(msg.topic or "", msg.key, raw, event, mapping))
        return out

    def resolve_pending(
        self, pending: list[Pending]
    ) -> tuple[list[Enriched | SinkItem], list[int]]:
        teams = [deserialize(ROUTES[p.topic][0], p.value).team_id for p in pending]
        mappings = self.lookup.get_many(teams, [p.message_id for p in pending])
        out: list[Enriched | SinkItem] = []
        missing: list[int] = []
        for index, (item, mapping) in enumerate(zip(pending, mappings, strict=True)):
            if mapping is None:
                missing.append(index)
                continue
            event = deserialize(ROUTES[item.topic][0], item.value)
            out.append(self._joined(item.topic, item.key, item.value, event, mapping))
        return out, missing

    def give_up(self, pending: Pending, waited_seconds: float) -> Enriched:
        """The open/click happened; store it without broadcast/contact rather than lose it."""
        ERRORS.labels(FLOW, "mapping_missing").inc()
        return self.enrich(
            pending.topic, deserialize(ROUTES[pending.topic][0], pending.value), None
        )


class FirstState(NamedTuple):
    first_open: str | None = None
    first_click: str | None = None
    last_click_at: float | None = None
    last_link: str = ""
    touched: float = 0.0


class FirstEventLogic(StatefulBatchLogic[Enriched, SinkItem, FirstState]):
    """Per message: first human open/click, and link-scanner bursts among clicks."""

    def __init__(
        self, tuning: PipelineTuning, state: FirstState | None, clock: Callable[[], float]
    ):
        self._tuning = tuning
        self._state = state or FirstState()
        self._clock = clock

    def on_batch(self, values: list[Enriched]) -> tuple[list[SinkItem], bool]:
        state = self._state
        out: list[SinkItem] = []
        for event in values:
            update: dict[str, Any] = {}
            machine = event.is_machine
            if isinstance(event, EnrichedClickEvent):
                at = event.occurred_at.timestamp()
                link = event.link_id or event.url
                burst = (
                    state.last_click_at is not None
                    and link != state.last_link
                    and abs(at - state.last_click_at) <= self._tuning.scanner_click_seconds
                )
                if burst and not machine:
                    machine = True
                    update.update(is_machine=True, machine_reason="link_scanner")
                state = state._replace(last_click_at=at, last_link=link)
                if not machine and state.first_click is None:
                    state = state._replace(first_click=event.event_id)
                update["is_first"] = not machine and state.first_click == event.event_id
                topic = Topic.CLICKHOUSE_EMAIL_CLICKS
            else:
                if not machine and state.first_open is None:
                    state = state._replace(first_open=event.event_id)
                update["is_first"] = not machine and state.first_open == event.event_id
                topic = Topic.CLICKHOUSE_EMAIL_OPENS
            payload = serialize(event.model_copy(update=update))
            out.append(KafkaSinkMessage(event.message_id.encode(), payload, topic=topic.value))
        self._state = state._replace(touched=self._clock())
        EVENTS_OUT.labels(FLOW, "tracking").inc(len(out))
        return out, StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[SinkItem], bool]:
        return [], StatefulBatchLogic.DISCARD

    def notify_at(self) -> datetime | None:
        expires = self._state.touched + self._tuning.first_event_state_seconds
        return datetime.fromtimestamp(expires, UTC)

    def snapshot(self) -> FirstState:
        return self._state


def build_flow(
    settings: Settings,
    *,
    source: Source[Any] | None = None,
    sink: Sink[Any] | None = None,
    redis_factory: RedisFactory | None = None,
    clock: Callable[[], float] = time.time,
) -> Dataflow:
    """The enrichment dataflow; tests pass TestingSource/TestingSink and a fake Redis."""
    from kibamail.clients import redis_client
    from pipelines.kafka_io import kafka_sink, kafka_source

    tuning = settings.pipelines.tuning
    enricher = Enricher(
        MappingLookup(redis_factory or (lambda: redis_client(settings))),
        GeoLookup(settings.pipelines.geoip_database),
        tuning.retry_shards,
    )
    flow = Dataflow(FLOW)
    topics = [Topic.EMAIL_OPENS.value, Topic.EMAIL_CLICKS.value]
    events = op.input("tracking", flow, source or kafka_source(settings, topics, FLOW))
    outcomes = op.flat_map_batch("parse_and_lookup", events, enricher.on_batch)
    split = op.branch("missing_mapping", outcomes, is_pending)
    retried = op.stateful_batch(
        "mapping_retry",
        op.key_on("retry_shard", split.trues, lambda pending: pending.shard),
        lambda state: MappingRetryLogic(
            enricher, tuning.mapping_retry_delays_seconds, state, clock
        ),
    )
    ready = op.merge("ready", split.falses, op.key_rm("unkey_retried", retried))
    dead = op.branch("dead_letters", ready, lambda item: isinstance(item, KafkaSinkMessage))
    firsts = op.stateful_batch(
        "first_per_message",
        op.key_on("by_message", cast("Stream[Enriched]", dead.falses), lambda e: e.message_id),
        lambda state: FirstEventLogic(tuning, state, clock),
    )
    done: Stream[SinkItem] = op.merge("all_out", dead.trues, op.key_rm("unkey_firsts", firsts))
    op.output("kafka_out", done, sink or kafka_sink(settings))
    return flow
