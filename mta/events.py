"""Status events: written to a durable Redis outbox, published to Kafka by a drain task.

Delivery and SMTP acceptance never wait on Kafka. A worker records an outcome by
appending the event to its slot group's outbox ``RedisKeys.event_outbox(g)`` in the same
MULTI that acknowledges the queue entry, so a crash can never lose an event or record one
twice under two ids. ``OutboxPublisher`` (the core's ``kibamail.outbox`` publisher,
shared with the API's tracking outbox, here over every group's outbox with the MTA's
metrics) drains them with a consumer group (entries of a dead process are reclaimed), hands
one batch from all of them to one confluent-kafka producer and acknowledges outbox entries
only after Kafka confirmed them. While the broker is down the outboxes simply grow in Redis.

Event ids are deterministic (uuid5 over message id, recipient, status, attempt), so a
message redelivered after a crash yields the same ids and is deduplicated downstream.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from kibamail.contracts import MessageStatus, MessageStatusEvent
from kibamail.outbox import OutboxPublisher as CoreOutboxPublisher
from kibamail.outbox import add_to_outbox, consumer_name, outbox_fields
from kibamail.redis_keys import SLOT_GROUPS, RedisKeys
from kibamail.settings import Settings

from . import metrics

log = logging.getLogger(__name__)

__all__ = [
    "OutboxPublisher",
    "add_to_outbox",
    "consumer_name",
    "make_status_event",
    "outbox_fields",
    "status_event_id",
]

_EVENT_NAMESPACE = uuid.UUID("6f1c5d1e-6c36-4c8b-9d1e-6b1a3e0c7a11")


def status_event_id(message_id: str, recipient: str, status: MessageStatus, attempt: int) -> str:
    return uuid.uuid5(_EVENT_NAMESPACE, f"{message_id}|{recipient}|{status}|{attempt}").hex


def make_status_event(**fields: Any) -> MessageStatusEvent:
    """A MessageStatusEvent whose event_id is derived from its identity fields."""
    fields.setdefault(
        "event_id",
        status_event_id(
            fields["message_id"],
            fields.get("recipient", ""),
            fields["status"],
            fields.get("attempt", 0),
        ),
    )
    return MessageStatusEvent(**fields)


class OutboxPublisher(CoreOutboxPublisher):
    """The MTA's outboxes (``RedisKeys.event_outbox(g)``, every slot group) with its
    Prometheus metrics."""

    def __init__(
        self, settings: Settings, redis: Any, groups: int = SLOT_GROUPS, **options: Any
    ) -> None:
        super().__init__(
            settings,
            redis,
            streams=[RedisKeys.event_outbox(g) for g in range(groups)],
            group=RedisKeys.EVENT_OUTBOX_GROUP,
            on_depth=metrics.OUTBOX_DEPTH.set,
            on_published=metrics.EVENTS_PUBLISHED.inc,
            **options,
        )
