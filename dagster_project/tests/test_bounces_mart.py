"""fct_bounces_daily: bounces by reason, action and provider, built by dbt against the real
warehouse (chDB gateway) from rows with the reasons the MTA records, plus its dbt unit test."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dagster_project.project import DBT_PROJECT_DIR, dbt_executable
from kibamail.settings import Settings, settings_to_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ROWS = [
    # (event id, status, recipient, provider group, reason, action)
    ("b1", "bounced", "a@gmail.com", "google", "user_unknown", "suppress"),
    ("b2", "bounced", "b@corp.example", "google", "user_unknown", "suppress"),
    ("b3", "bounced", "c@outlook.com", "microsoft", "blocked", "fix_our_side"),
    ("b4", "deferred", "d@yahoo.com", "yahoo", "rate_limited", "retry"),
    ("b5", "complained", "e@isp.example", "default", "complaint", "suppress"),
    ("b6", "delivered", "f@gmail.com", "google", "", ""),
]


def dbt(settings: Settings, work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [dbt_executable(), *args,
         "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
         "--target-path", str(work / "target"), "--log-path", str(work / "logs")],
        env={**os.environ, **settings_to_env(settings)},
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip


def test_mart_counts_bounces_by_reason_action_and_provider(
    isolated_warehouse: Settings, tmp_path: Path
) -> None:
    from kibamail.clients import clickhouse_client

    settings = isolated_warehouse
    db = settings.clickhouse.database
    client: Any = clickhouse_client(settings)
    values = ", ".join(
        f"('{eid}', 1, 'tb', toDateTime64('2026-10-02 10:00:00', 3, 'UTC'), 'm-{eid}', "
        f"'{status}', '{rcpt}', '{rcpt.rpartition('@')[2]}', 'tb.example', 'transactional', "
        f"'{group}', '{reason}', '{action}', [])"
        for eid, status, rcpt, group, reason, action in ROWS
    )
    client.command(
        f"INSERT INTO {db}.raw_message_events (event_id, event_version, team_id, occurred_at, "
        "message_id, status, recipient, recipient_domain, sender_domain, kind, provider_group, "
        f"bounce_reason, bounce_action, tags) VALUES {values}"
    )
    result = dbt(settings, tmp_path, "build", "--select", "+fct_bounces_daily")
    assert result.returncode == 0, result.stdout[-3000:]
    assert re.search(r"PASS \w+::bounces_by_reason_action_and_provider\b", result.stdout)
    rows = client.query(
        f"SELECT provider, reason, action, bounced, deferred, complaints, suppressed "
        f"FROM {db}.fct_bounces_daily WHERE team_id = 'tb' ORDER BY provider, reason"
    ).result_rows
    assert [tuple(r) for r in rows] == [
        ("google", "user_unknown", "suppress", 2, 0, 0, 2),  # corp.example's MX is Google
        ("microsoft", "blocked", "fix_our_side", 1, 0, 0, 0),
        ("other", "complaint", "suppress", 0, 0, 1, 1),
        ("yahoo", "rate_limited", "retry", 0, 1, 0, 0),
    ]
