"""Usage sources travel end to end: the mapping's ``api_key_id``/``smtp_credential_id``
are copied by the correlation flow into the joined row and land in ``raw_message_events``
through both insert formats (Arrow and JSONEachRow); older mappings read ''."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from kibamail.contracts import (
    CorrelatedMessageEvent,
    MessageMapping,
    MessageStatus,
    Topic,
    deserialize,
    serialize,
)
from kibamail.settings import Settings
from pipelines.mapping import parse_mapping
from pipelines.tests.fakes import FakeRedis, source_message, status_event
from pipelines.tests.test_correlation_unit import TOPIC, by_topic, run
from pipelines.tests.test_sink_arrow_integration import insert

SOURCES = [("key_1", ""), ("", "kbsmtp_1"), ("", "")]  # (api key, credential)


def correlated_rows(team: str) -> list[bytes]:
    redis = FakeRedis()
    events = []
    for i, (key, credential) in enumerate(SOURCES):
        events.append(status_event(f"{team}-m{i}", MessageStatus.ACCEPTED, team=team))
        mapping = MessageMapping(team_id=team, api_key_id=key, smtp_credential_id=credential)
        redis.map(f"{team}-m{i}", mapping)
    out = run([source_message(TOPIC, serialize(e), i) for i, e in enumerate(events)], redis)
    rows = by_topic(out, Topic.CLICKHOUSE_MESSAGES)
    joined = [deserialize(CorrelatedMessageEvent, orjson.dumps(r)) for r in rows]
    assert [(j.api_key_id, j.smtp_credential_id) for j in joined] == SOURCES
    return [orjson.dumps(row, option=orjson.OPT_UTC_Z) for row in rows]


@pytest.mark.integration
@pytest.mark.parametrize("as_arrow", [True, False], ids=["arrow", "json"])
def test_sources_reach_the_clickhouse_row(
    test_settings: Settings, warehouse_client: Any, as_arrow: bool
) -> None:
    team = f"s-{uuid.uuid4().hex[:8]}"
    insert(test_settings, warehouse_client, correlated_rows(team), as_arrow=as_arrow)
    stored = warehouse_client.query(
        "SELECT api_key_id, smtp_credential_id FROM "
        f"{test_settings.clickhouse.database}.raw_message_events FINAL "
        "WHERE team_id = {t:String} ORDER BY message_id",
        parameters={"t": team},
    ).result_rows
    assert [tuple(r) for r in stored] == SOURCES


@pytest.mark.unit
def test_mappings_without_sources_read_empty_and_wrong_types_are_refused() -> None:
    old = parse_mapping("m", b'{"team_id": "t", "broadcast_id": "b", "tags": []}')
    assert not isinstance(old, Exception)
    assert (old.api_key_id, old.smtp_credential_id) == ("", "")
    forged = parse_mapping("m", b'{"team_id": "t", "api_key_id": ["k1", "k2"]}')
    assert isinstance(forged, Exception) and "unreadable mapping" in str(forged)
