"""Reads from ClickHouse (the chDB gateway): always filtered by the caller's team."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.tests.conftest import RecordingProducer, SendingTeam
from kibamail.contracts import ClickHouseTable
from kibamail.settings import Settings

pytestmark = pytest.mark.integration


def _insert(
    clickhouse: Any, db: str, team: str, message: str, contact: str, broadcast: str
) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    columns = [
        "event_id",
        "event_version",
        "team_id",
        "occurred_at",
        "message_id",
        "status",
        "recipient",
        "broadcast_id",
        "contact_id",
        "variant_id",
        "tags",
    ]
    rows = [
        [
            uuid.uuid4().hex,
            1,
            team,
            now,
            message,
            "accepted",
            "r@example.org",
            broadcast,
            contact,
            "a",
            ["receipt"],
        ],
        [
            uuid.uuid4().hex,
            1,
            team,
            now + timedelta(seconds=1),
            message,
            "delivered",
            "r@example.org",
            broadcast,
            contact,
            "a",
            ["receipt"],
        ],
    ]
    clickhouse.insert(f"{db}.{ClickHouseTable.MESSAGE_EVENTS.value}", rows, column_names=columns)
    clickhouse.insert(
        f"{db}.{ClickHouseTable.EMAIL_OPENS.value}",
        [[uuid.uuid4().hex, 1, team, now + timedelta(seconds=2), message, broadcast, contact, "a"]],
        column_names=[
            "event_id",
            "event_version",
            "team_id",
            "occurred_at",
            "message_id",
            "broadcast_id",
            "contact_id",
            "variant_id",
        ],
    )


@pytest.fixture
def warehouse_client(
    api_settings: Settings,
    isolated_warehouse: Settings,
    redis_client: Any,
    producer: RecordingProducer,
) -> Iterator[TestClient]:
    """The app reading this module's own ClickHouse database: the hand-written rows
    below (no `kind`, no provider) must not reach the session database that other
    tests build dbt marts from (its accepted_values tests would fail on them)."""
    settings = api_settings.model_copy(update={"clickhouse": isolated_warehouse.clickhouse})
    app = create_app(settings, producer=producer, run_scheduler=False)
    with TestClient(app) as test_client:
        yield test_client


def test_reads_are_team_scoped(
    warehouse_client: TestClient,
    team: SendingTeam,
    clickhouse: Any,
    isolated_warehouse: Settings,
) -> None:
    client = warehouse_client
    db = isolated_warehouse.clickhouse.database
    mine, theirs = f"{uuid.uuid4()}@x", f"{uuid.uuid4()}@x"
    contact, broadcast = uuid.uuid4().hex, uuid.uuid4().hex
    _insert(clickhouse, db, team.team_id, mine, contact, broadcast)
    _insert(clickhouse, db, "another-team", theirs, contact, broadcast)
    base = f"/v1/teams/{team.team_id}"
    events = client.get(f"{base}/messages/{mine}/events", headers=team.auth).json()["data"]
    assert [e["status"] for e in events] == ["accepted", "delivered"]
    assert client.get(f"{base}/messages/{theirs}/events", headers=team.auth).json()["data"] == []
    by_recipient = client.get(
        f"{base}/messages", params={"recipient": "r@example.org"}, headers=team.auth
    )
    assert {e["message_id"] for e in by_recipient.json()["data"]} == {mine}
    by_tag = client.get(f"{base}/messages", params={"tag": "receipt"}, headers=team.auth).json()
    assert {e["message_id"] for e in by_tag["data"]} == {mine}
    timeline = client.get(f"{base}/contacts/{contact}/timeline", headers=team.auth).json()["data"]
    assert [t["type"] for t in timeline] == ["accepted", "delivered", "opened"]
    stats = client.get(f"{base}/broadcasts/{broadcast}/stats", headers=team.auth).json()
    assert stats["variants"] == {"a": {"accepted": 1, "delivered": 1, "opened": 1}}
    other = client.get(f"/v1/teams/another-team/messages/{theirs}/events", headers=team.auth)
    assert other.status_code == 404
