"""Bounce reasons travel end to end: a status event with ``bounce_reason``/``bounce_action``
is correlated (the joined row keeps them) and lands in ``raw_message_events`` with them,
through both insert formats (Arrow and JSONEachRow)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from kibamail.contracts import (
    BounceClass,
    CorrelatedMessageEvent,
    MessageMapping,
    MessageStatus,
    Topic,
    deserialize,
    serialize,
)
from kibamail.settings import Settings
from pipelines.tests.fakes import FakeRedis, source_message, status_event
from pipelines.tests.test_correlation_unit import TOPIC, by_topic, run
from pipelines.tests.test_sink_arrow_integration import insert

pytestmark = pytest.mark.integration

OUTCOMES = [
    # (status, class, reason, action, provider group)
    (MessageStatus.BOUNCED, BounceClass.HARD, "user_unknown", "suppress", "google"),
    (MessageStatus.BOUNCED, BounceClass.BLOCK, "blocked", "fix_our_side", "microsoft"),
    (MessageStatus.DEFERRED, BounceClass.QUOTA, "mailbox_full", "retry", "yahoo"),
    (MessageStatus.EXPIRED, BounceClass.SOFT, "expired", "retry", "default"),
    (MessageStatus.COMPLAINED, BounceClass.NONE, "complaint", "suppress", "google"),
    (MessageStatus.DELIVERED, BounceClass.NONE, "", "", "google"),
]


def correlated_rows(team: str) -> list[bytes]:
    """The correlation flow's output for one event per outcome (mapping in a fake Redis)."""
    redis = FakeRedis()
    events = []
    for i, (status, cls, reason, action, group) in enumerate(OUTCOMES):
        events.append(
            status_event(
                f"{team}-m{i}",
                status,
                team=team,
                bounce_class=cls,
                bounce_reason=reason,
                bounce_action=action,
                provider_group=group,
            )
        )
        redis.map(f"{team}-m{i}", MessageMapping(team_id=team, broadcast_id="b1"))
    out = run([source_message(TOPIC, serialize(e), i) for i, e in enumerate(events)], redis)
    rows = by_topic(out, Topic.CLICKHOUSE_MESSAGES)
    assert len(rows) == len(OUTCOMES)
    for row in rows:
        joined = deserialize(CorrelatedMessageEvent, orjson.dumps(row))
        assert joined.broadcast_id == "b1"
    return [orjson.dumps(row, option=orjson.OPT_UTC_Z) for row in rows]


def stored_reasons(client: Any, db: str, team: str) -> list[tuple[str, ...]]:
    return [
        tuple(row)
        for row in client.query(
            "SELECT status, bounce_class, bounce_reason, bounce_action, provider_group "
            f"FROM {db}.raw_message_events FINAL WHERE team_id = {{t:String}} "
            "ORDER BY message_id",
            parameters={"t": team},
        ).result_rows
    ]


@pytest.mark.parametrize("as_arrow", [True, False], ids=["arrow", "json"])
def test_status_event_reason_reaches_the_clickhouse_row(
    test_settings: Settings, warehouse_client: Any, as_arrow: bool
) -> None:
    team = f"r-{uuid.uuid4().hex[:8]}"
    insert(test_settings, warehouse_client, correlated_rows(team), as_arrow=as_arrow)
    expected = [
        (status.value, cls.value, reason, action, group)
        for status, cls, reason, action, group in OUTCOMES
    ]
    assert stored_reasons(warehouse_client, test_settings.clickhouse.database, team) == expected


def test_older_events_without_reasons_still_parse_and_read_empty() -> None:
    """An event from a producer before the fields existed validates with '' for both."""
    old = orjson.loads(serialize(status_event("m-old", MessageStatus.BOUNCED)))
    del old["bounce_reason"], old["bounce_action"]
    event = deserialize(CorrelatedMessageEvent, orjson.dumps({**old, "broadcast_id": ""}))
    assert (event.bounce_reason, event.bounce_action) == ("", "")
