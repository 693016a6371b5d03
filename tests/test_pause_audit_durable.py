"""The durable pause audit on real Redis, the sink's inserter and the warehouse: every
decision (review request, confirm, lift) queues a ``team_pause_audit`` event with the
decision itself; once the sink wrote them, the audit survives a Redis flush, reads back
per team only, and a replayed batch is still one row per decision. The console's
``teams pauses audit`` reads that history and refuses malformed and unknown team ids.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from console.cli import main as cli
from kibamail import pause_audit, team_pauses
from kibamail.contracts import TeamPauseAuditEvent, Topic, deserialize
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings, settings_to_env
from mta.tests.test_pause_lifecycle import paused_team
from pipelines.sinks.inserts import Inserter
from pipelines.sinks.rows import Batch

pytestmark = pytest.mark.integration


def audit_rows(redis: Any) -> list[bytes]:
    """The ``team_pause_audit`` values on the group outboxes (what the MTA's publisher
    sends), each team's in the order they were queued."""
    return [
        fields[b"value"]
        for stream in RedisKeys.event_outboxes()
        for _id, fields in redis.xrange(stream)
        if fields[b"topic"] == Topic.TEAM_PAUSE_AUDIT.value.encode()
    ]


def sink(settings: Settings, ch: Any, rows: list[bytes]) -> None:
    """The ClickHouse sink's insert of one fetch of the topic."""

    def no_dead_letters(*args: Any) -> None:
        raise AssertionError(f"unexpected dead letter {args}")

    inserter = Inserter(lambda: ch, settings.clickhouse.database, 1.0, no_dead_letters)
    batch = Batch()
    for offset, row in enumerate(rows):
        batch.add(Topic.TEAM_PAUSE_AUDIT, 0, offset, row)
    assert inserter.insert_batch(batch)


def _decide(redis: Any, team: str) -> None:
    team_pauses.request_review(redis, team, requested_by="u-admin", note="we fixed the list")
    team_pauses.confirm(redis, team, operator="ops-ana", reason="still a newsletter")
    team_pauses.lift(redis, team, operator="ops-bo", reason="customer moved it to broadcasts")


def test_audit_survives_a_redis_flush_and_stays_per_team(
    redis_client: Any, isolated_warehouse: Settings
) -> None:
    from kibamail.clients import clickhouse_client

    settings, ch = isolated_warehouse, clickhouse_client(isolated_warehouse)
    db = settings.clickhouse.database
    team, other = paused_team(redis_client), paused_team(redis_client)
    _decide(redis_client, team)
    team_pauses.confirm(redis_client, other, operator="ops-cy", reason="other team's pause")
    rows = audit_rows(redis_client)
    events = [deserialize(TeamPauseAuditEvent, r) for r in rows]
    assert [e.action for e in events if e.team_id == team] == [
        "review_requested", "confirm", "lift"
    ]  # fmt: skip
    assert [e.action for e in events if e.team_id == other] == ["confirm"]
    assert len(events) == 4
    assert all(e.pause_event_id == "e1" and e.pause_score == 0.93 for e in events)
    pending = pause_audit.history(redis_client, ch, db, team)
    assert [(e["action"], e["durable"]) for e in pending] == [
        ("lift", False), ("confirm", False), ("review_requested", False)
    ]  # fmt: skip
    sink(settings, ch, rows)
    sink(settings, ch, rows)  # a replayed fetch: still one row per decision
    redis_client.flushdb()
    assert team_pauses.audit_log(redis_client, team) == []
    durable = pause_audit.history(redis_client, ch, db, team)
    assert [(e["action"], e["by"], e["durable"]) for e in durable] == [
        ("lift", "ops-bo", True), ("confirm", "ops-ana", True),
        ("review_requested", "u-admin", True),
    ]  # fmt: skip
    assert durable[2]["reason"] == "we fixed the list"
    mine = [e.event_id for e in events if e.team_id == team]
    assert [e["event_id"] for e in durable] == mine[::-1]
    theirs = pause_audit.history(redis_client, ch, db, other)
    assert [(e["action"], e["by"]) for e in theirs] == [("confirm", "ops-cy")]
    assert not {e["event_id"] for e in theirs} & {e["event_id"] for e in durable}


def _db_team(settings: Settings) -> str:
    from api.bootstrap import create_team_with_key

    suffix = uuid.uuid4().hex[:8]
    team_id, _key = create_team_with_key(
        settings, email=f"pa-{suffix}@example.com", team_name="pa", domain=f"pa{suffix}.example"
    )
    return team_id


def test_console_audit_reads_the_durable_history_and_refuses_unknown_teams(
    redis_client: Any,
    isolated_warehouse: Settings,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    from kibamail.clients import clickhouse_client
    from kibamail.settings import get_settings

    settings = isolated_warehouse
    env, runner = settings_to_env(settings), CliRunner()
    # The console runs in this process: its get_settings() must read this module's
    # warehouse, not settings another test cached.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    request.addfinalizer(get_settings.cache_clear)
    team, other = _db_team(settings), _db_team(settings)
    for t in (team, other):
        flag = {"event_id": f"p-{t}", "team_id": t, "paused": True, "score": 0.9,
                "reason": "bulk score 0.90", "source": "scoring"}  # fmt: skip
        redis_client.set(RedisKeys.team_paused(t), orjson.dumps(flag))
    args = ["--reason", "false positive", "--operator", "ops-ana"]
    assert runner.invoke(cli, ["teams", "pauses", "lift", team, *args], env=env).exit_code == 0
    assert runner.invoke(cli, ["teams", "pauses", "confirm", other, *args], env=env).exit_code == 0
    sink(settings, clickhouse_client(settings), audit_rows(redis_client))
    redis_client.flushdb()
    shown = runner.invoke(cli, ["teams", "pauses", "audit", team], env=env)
    assert shown.exit_code == 0, shown.output
    entries = [orjson.loads(line) for line in shown.output.splitlines()]
    assert [(e["action"], e["by"], e["durable"]) for e in entries] == [("lift", "ops-ana", True)]
    assert entries[0]["pause_event_id"] == f"p-{team}"
    for forged, why in ((uuid.uuid4().hex, "unknown team"), ("x' OR 1=1 --", "not a team id")):
        refused = runner.invoke(cli, ["teams", "pauses", "audit", forged], env=env)
        assert refused.exit_code != 0 and why in refused.output
        assert "ops-ana" not in refused.output
