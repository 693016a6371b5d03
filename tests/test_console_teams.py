"""`kibamail teams pauses list|lift|confirm|audit` on real Redis: the evidence as JSON, a
lift needs a reason (refused without one, nothing changed), queues `team.unpaused`, is
audited with the operator's name; confirming keeps the pause; a second lift is refused."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from console.cli import main as cli
from kibamail import team_pauses
from kibamail.contracts import Topic
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from mta.tests.test_pause_lifecycle import outbox_events, paused_team


@pytest.mark.integration
def test_console_lists_lifts_and_confirms(redis_client: Any, test_settings: Settings) -> None:
    from api.webhooks.delivery import event_type
    from kibamail.settings import settings_to_env

    env = settings_to_env(test_settings)
    runner = CliRunner()
    team, other = paused_team(redis_client), paused_team(redis_client)
    listed = runner.invoke(cli, ["teams", "pauses", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    rows = {r["team_id"]: r for r in map(orjson.loads, listed.output.splitlines())}
    assert rows[team]["components"]["near_duplicate_share"] == 0.97
    assert rows[team]["sample_subjects"][0] == "Spring deals"
    refused = runner.invoke(cli, ["teams", "pauses", "lift", team], env=env)
    assert refused.exit_code != 0 and "--reason" in refused.output
    assert redis_client.exists(RedisKeys.team_paused(team)) == 1
    args = ["--reason", "false positive", "--operator", "ops-ana"]
    lifted = runner.invoke(cli, ["teams", "pauses", "lift", team, *args], env=env)
    assert lifted.exit_code == 0, lifted.output
    (event,) = outbox_events(redis_client, team)
    assert event_type(Topic.TEAM_PAUSES.value, event.model_dump(mode="json")) == "team.unpaused"
    done = runner.invoke(cli, ["teams", "pauses", "confirm", other, *args], env=env)
    assert done.exit_code == 0 and redis_client.exists(RedisKeys.team_paused(other)) == 1
    again = runner.invoke(cli, ["teams", "pauses", "lift", team, *args], env=env)
    assert again.exit_code != 0 and "not paused" in again.output
    assert team_pauses.audit_log(redis_client, team)[0]["by"] == "ops-ana"
    # The console's audit reads the durable history of teams the API database knows; this
    # Redis-only team is refused (tests/test_pause_audit_durable.py reads a real one).
    from api.db import migrate

    migrate(test_settings.database.url)
    audit = runner.invoke(cli, ["teams", "pauses", "audit", team], env=env)
    assert audit.exit_code != 0 and f"unknown team {team}" in audit.output


@pytest.mark.integration
def test_dagster_ops_list_and_lift(
    redis_client: Any, test_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ops UI's jobs: the same evidence, the same audited lift."""
    from dagster_project.defs.teams import team_pause_decision, team_pauses_list
    from kibamail.settings import get_settings, settings_to_env
    from kibamail.team_pauses import audit_log

    for name, value in settings_to_env(test_settings).items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        team = paused_team(redis_client)
        listed = team_pauses_list.execute_in_process()
        records = listed.output_for_node("list_team_pauses")
        assert team in {r["team_id"] for r in records}
        config = {"team_id": team, "action": "lift", "reason": "looked fine", "operator": "ana"}
        run = team_pause_decision.execute_in_process(
            run_config={"ops": {"decide_team_pause": {"config": config}}}
        )
        assert run.success
        assert redis_client.exists(RedisKeys.team_paused(team)) == 0
        assert audit_log(redis_client, team)[0]["by"] == "ana"
        refused = team_pause_decision.execute_in_process(
            run_config={"ops": {"decide_team_pause": {"config": config}}}, raise_on_error=False
        )
        assert not refused.success  # not paused any more: a readable failure
    finally:
        get_settings.cache_clear()
