"""fct_usage_by_source_monthly: accepted recipients per API key, SMTP credential, broadcast
and the rest, built by dbt against the real warehouse (chDB gateway) from rows with the
source columns migration 0007 adds, plus its dbt unit test and column tests."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from dagster_project.tests.test_bounces_mart import dbt
from kibamail.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ROWS = [
    # (event id, message, status, recipient, api key, credential, broadcast)
    ("e1", "m1", "accepted", "a@x.example", "key_1", "", ""),
    ("e2", "m1", "accepted", "b@x.example", "key_1", "", ""),
    ("e3", "m1", "delivered", "a@x.example", "key_1", "", ""),
    ("e4", "m2", "accepted", "c@x.example", "", "kbsmtp_1", ""),
    ("e5", "m3", "accepted", "d@x.example", "", "", "b1"),
    ("e6", "m4", "accepted", "e@x.example", "", "", ""),
]


def test_mart_counts_accepted_recipients_by_source(
    isolated_warehouse: Settings, tmp_path: Path
) -> None:
    from kibamail.clients import clickhouse_client

    settings = isolated_warehouse
    db = settings.clickhouse.database
    client: Any = clickhouse_client(settings)
    values = ", ".join(
        f"('{eid}', 1, 'tu', toDateTime64('2026-10-02 10:00:00', 3, 'UTC'), 'tu-{mid}', "
        f"'{status}', '{rcpt}', 'x.example', 'tu.example', 'transactional', '{key}', "
        f"'{cred}', '{broadcast}', [])"
        for eid, mid, status, rcpt, key, cred, broadcast in ROWS
    )
    client.command(
        f"INSERT INTO {db}.raw_message_events (event_id, event_version, team_id, occurred_at, "
        "message_id, status, recipient, recipient_domain, sender_domain, kind, api_key_id, "
        f"smtp_credential_id, broadcast_id, tags) VALUES {values}"
    )
    result = dbt(settings, tmp_path, "build", "--select", "+fct_usage_by_source_monthly")
    assert result.returncode == 0, result.stdout[-3000:]
    assert re.search(
        r"PASS \w+::usage_by_source_attributes_each_accepted_recipient_once\b", result.stdout
    )
    rows = client.query(
        f"SELECT source_type, source_id, accepted_recipients FROM {db}.fct_usage_by_source_monthly "
        "WHERE team_id = 'tu' AND usage_month = '2026-10-01' ORDER BY source_type, source_id"
    ).result_rows
    assert [tuple(r) for r in rows] == [
        ("api_key", "key_1", 2),
        ("broadcast", "b1", 1),
        ("other", "", 1),
        ("smtp_credential", "kbsmtp_1", 1),
    ]
