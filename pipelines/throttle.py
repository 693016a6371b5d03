"""Reputation signals -> throttle decisions in Redis, the MTA's automatic traffic shaping.

Consumes ``reputation_signals`` (from the Flink SQL jobs) and, per team or sending IP x
provider, writes ``RedisKeys.reputation_throttle(scope, key)``: ``pause`` when bounce
or complaint rates cross the pause thresholds, ``slow`` (with a rate factor) when they
cross the slow thresholds, and removes the key when a window is healthy again (KumoMTA's
automatic traffic shaping is the model). Decisions expire on their own after
``ttl_seconds`` so a stopped pipeline never throttles forever. Kafka offsets are
committed after Redis has the decisions.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import orjson
from pydantic import BaseModel

from kibamail.contracts import ContractError, ReputationSignal, Topic, deserialize
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from pipelines.metrics import DEAD_LETTERS, EVENTS_IN

log = logging.getLogger(__name__)

FLOW = "throttle"
GROUP_ID = "kibamail-reputation-throttle"


class ThrottlePolicy(BaseModel):
    """Thresholds (rates in 0..1); a window needs min_messages before it can throttle."""

    min_messages: int = 50
    pause_bounce_rate: float = 0.10
    pause_complaint_rate: float = 0.005
    slow_bounce_rate: float = 0.05
    slow_complaint_rate: float = 0.001
    slow_defer_rate: float = 0.30
    slow_factor: float = 0.25
    ttl_seconds: int = 3600


def decide(signal: ReputationSignal, policy: ThrottlePolicy) -> dict[str, Any] | None:
    """The decision for one window, or None when it is healthy (or too small to judge)."""
    volume = signal.delivered + signal.bounced + signal.deferred
    if volume < policy.min_messages:
        return None
    detail = (
        f"{signal.window} window {signal.window_start:%Y-%m-%d %H:%M}: bounce "
        f"{signal.bounce_rate:.1%}, complaint {signal.complaint_rate:.2%}, defer "
        f"{signal.defer_rate:.1%} over {volume} messages"
    )
    if (
        signal.bounce_rate >= policy.pause_bounce_rate
        or signal.complaint_rate >= policy.pause_complaint_rate
    ):
        return {"action": "pause", "factor": 0.0, "reason": detail, "event_id": signal.event_id}
    if (
        signal.bounce_rate >= policy.slow_bounce_rate
        or signal.complaint_rate >= policy.slow_complaint_rate
        or signal.defer_rate >= policy.slow_defer_rate
    ):
        return {
            "action": "slow",
            "factor": policy.slow_factor,
            "reason": detail,
            "event_id": signal.event_id,
        }
    return None


def apply(redis: Any, signals: list[ReputationSignal], policy: ThrottlePolicy) -> int:
    """Write the decisions of a batch in one round trip; returns how many keys throttle.

    Per key the most severe decision of the batch wins (a healthy 1-hour window must not
    lift the pause a bad minute just caused); a key with only healthy 1-hour windows in
    the batch is cleared.
    """
    decisions: dict[str, dict[str, Any]] = {}
    healthy: set[str] = set()
    for signal in signals:
        if signal.scope not in ("team", "ip_provider"):
            continue
        key = RedisKeys.reputation_throttle(signal.scope, signal.scope_key)
        decision = decide(signal, policy)
        if decision is None:
            if signal.window == "1h":
                healthy.add(key)
            continue
        current = decisions.get(key)
        if current is None or SEVERITY[decision["action"]] > SEVERITY[current["action"]]:
            decisions[key] = decision
    if not decisions and not healthy:
        return 0
    pipe = redis.pipeline(transaction=False)
    for key, decision in decisions.items():
        pipe.set(key, orjson.dumps(decision), ex=policy.ttl_seconds)
    for key in healthy - decisions.keys():
        pipe.delete(key)
    pipe.execute()
    return len(decisions)


SEVERITY = {"slow": 1, "pause": 2}


def run(settings: Settings, stop: threading.Event, policy: ThrottlePolicy | None = None) -> None:
    from confluent_kafka import Consumer

    from kibamail.clients import kafka_consumer_config, redis_client

    policy = policy or ThrottlePolicy()
    redis = redis_client(settings)
    consumer = Consumer(kafka_consumer_config(GROUP_ID, settings))
    consumer.subscribe([Topic.REPUTATION_SIGNALS.value])
    try:
        while not stop.is_set():
            messages = consumer.consume(1000, 0.5)
            signals = []
            for msg in messages:
                if msg.error() is not None:
                    continue
                try:
                    signals.append(deserialize(ReputationSignal, msg.value() or b""))
                except ContractError as exc:
                    # The ClickHouse sink dead-letters the same message; count it here.
                    DEAD_LETTERS.labels(FLOW, str(exc).split(":", 1)[0][:40]).inc()
            if messages:
                EVENTS_IN.labels(FLOW).inc(len(messages))
                apply(redis, signals, policy)
                consumer.commit(asynchronous=False)
    finally:
        consumer.close()
