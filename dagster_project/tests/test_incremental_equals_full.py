"""An incremental `dbt build` leaves every model exactly as a fresh full rebuild would.

History is loaded as a sink writes it (ingested seconds after each event) and built in
full; then late events for days and a month already built, events of a new day and of a
team never seen, rows ingested inside the lookback window (a sink whose clock is behind),
opens, clicks, complaints and unsubscribes of old messages, and redelivered copies of
loaded events arrive. After an incremental build and a no-op one, every model is read
row for row, then rebuilt with `--full-refresh` and read again: both must be identical
(only `loaded_by_run`, the id of the dbt run that wrote a row, differs by design).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from dagster_project.defs.warehouse.assets import BUILD_ARGS
from dagster_project.project import DBT_PROJECT_DIR, dbt_executable
from kibamail.settings import Settings, settings_to_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]

RUN = uuid.uuid4().hex[:6]
OLD_TEAMS = [f"inc_{RUN}_{n}" for n in range(3)]
NEW_TEAM = f"inc_{RUN}_new"
MODELS = (
    "fct_message_events", "int_messages", "fct_email_opens", "fct_email_clicks",
    "fct_contact_activity", "fct_deliverability_daily", "fct_reputation_daily",
    "fct_bounces_daily", "int_billing_usage_monthly", "int_team_months", "fct_billing_monthly",
    "fct_dmarc_daily", "fct_usage_by_source_monthly",
)  # fmt: skip
HISTORY = "toDateTime64('2026-09-25 00:00:00', 3, 'UTC')"  # 10 days: September and October


def at(moment: str) -> str:
    return f"toDateTime64('{moment}', 3, 'UTC')"


def insert_events(client: Any, db: str, team: str, prefix: str, messages: int, start: str,
                  span_seconds: int, ingested: str) -> None:  # fmt: skip
    """Two events per message (accepted, then delivered/deferred/bounced/complained);
    complaints name no IP or domain (the marts take the message's). `ingested` is an SQL
    expression over `occurred` (the sink's clock)."""
    client.command(
        f"""
        INSERT INTO {db}.raw_message_events
            (event_id, event_version, team_id, occurred_at, message_id, status, recipient,
             recipient_domain, sender_domain, kind, source_ip, mx_host, smtp_code,
             enhanced_code, bounce_class, bounce_reason, bounce_action, provider_group,
             broadcast_id, contact_id, tags, ingested_at)
        SELECT concat('{prefix}', toString(n)), 1, '{team}', occurred,
               concat('{prefix}m', toString(msg)),
               multiIf(step = 0, 'accepted', h % 10 < 6, 'delivered', h % 10 < 8, 'deferred',
                       h % 10 < 9, 'bounced', 'complained') AS status,
               concat('r', toString(msg % 7), '@', domain), domain,
               if(status = 'complained', '', 'news.{team}.example'),
               if(msg % 3 = 0, 'transactional', 'marketing'),
               if(step = 0 OR status = 'complained', '', concat('192.0.2.', toString(msg % 3 + 1))),
               if(step = 0, '', concat('mx.', domain)),
               toUInt16(multiIf(status = 'bounced', 550, status = 'deferred', 451, 250)),
               if(status = 'bounced', '5.1.1', ''), if(status = 'bounced', 'hard', ''),
               if(status = 'bounced', 'mailbox_unknown', ''),
               if(status = 'bounced', 'suppress', ''),
               if(step = 0, '', 'google'), if(msg % 3 = 0, '', concat('b', toString(msg % 2))),
               if(msg % 3 = 0, '', concat('c', toString(msg % 5))), [], {ingested}
        FROM (
            SELECT number AS n, intDiv(number, 2) AS msg, number % 2 AS step,
                   cityHash64(msg, '{prefix}') AS h,
                   ['gmail.com', 'outlook.com', 'corp.example'][h % 3 + 1] AS domain,
                   {start} + toIntervalSecond(intDiv(msg * {span_seconds}, {messages}) + step * 30)
                       AS occurred
            FROM numbers({2 * messages})
        )
        """
    )


def insert_engagement(client: Any, db: str, table: str, team: str, prefix: str,
                      messages: str, rows: int, start: str, ingested: str) -> None:  # fmt: skip
    click = table.endswith("clicks")
    columns = "url, link_id, " if click else ""
    values = "'https://example.com/a', 'l1', " if click else ""
    client.command(
        f"""
        INSERT INTO {db}.{table}
            (event_id, event_version, team_id, occurred_at, message_id, {columns}country,
             is_machine, is_first, ingested_at)
        SELECT concat('{prefix}', toString(number)), 1, '{team}',
               {start} + toIntervalSecond(number * 3600) AS occurred,
               concat('{messages}m', toString(number * 3)), {values}
               ['DE', 'US'][number % 2 + 1], number % 4 = 0, number % 2 = 0, {ingested}
        FROM numbers({rows})
        """
    )


def insert_unsubscribes(client: Any, db: str, team: str, prefix: str, message_prefix: str,
                        rows: int, start: str, ingested: str) -> None:  # fmt: skip
    client.command(
        f"""
        INSERT INTO {db}.raw_unsubscribes
            (event_id, event_version, team_id, occurred_at, message_id, contact_id, email,
             method, ingested_at)
        SELECT concat('{prefix}', toString(number)), 1, '{team}',
               {start} + toIntervalSecond(number * 7200) AS occurred,
               concat('{message_prefix}m', toString(number * 5)),
               '', '', 'one_click', {ingested}
        FROM numbers({rows})
        """
    )


def insert_dmarc(client: Any, db: str, team: str, key: str, day: str) -> None:
    client.command(
        f"""
        INSERT INTO {db}.raw_dmarc_records
            (report_key, record_index, team_id, domain, org_name, report_id, day, begin_at,
             end_at, source_ip, message_count, disposition, dkim_aligned, spf_aligned,
             dmarc_pass, header_from, policy_p)
        VALUES ('{key}', 0, '{team}', 'news.{team}.example', 'google.com', '{key}', '{day}',
                '{day} 00:00:00', '{day} 23:59:59', '192.0.2.1', 12, 'none', 1, 1, 1,
                'news.{team}.example', 'none')
        """
    )


def load_history(client: Any, db: str) -> None:
    for index, team in enumerate(OLD_TEAMS):
        prefix = f"{team}h"
        insert_events(client, db, team, prefix, 400 * (index + 1), HISTORY, 10 * 86400,
                      "occurred + toIntervalSecond(5)")  # fmt: skip
        for table, kind in (("raw_email_opens", "o"), ("raw_email_clicks", "k")):
            insert_engagement(client, db, table, team, f"{prefix}{kind}", prefix, 60, HISTORY,
                              "occurred + toIntervalSecond(5)")  # fmt: skip
        insert_unsubscribes(client, db, team, f"{prefix}u", prefix, 5, HISTORY,
                            "occurred + toIntervalSecond(5)")  # fmt: skip
    insert_dmarc(client, db, OLD_TEAMS[0], f"{RUN}rk1", "2026-09-30")


def load_increment(client: Any, db: str) -> None:
    newest = client.query(f"SELECT max(ingested_at) FROM {db}.raw_message_events").result_rows[0][0]
    skewed = f"toDateTime64('{newest:%Y-%m-%d %H:%M:%S}', 3, 'UTC') - toIntervalMinute(3)"
    team = OLD_TEAMS[0]
    # late events of a day (2026-09-26) and a month (September) already built
    insert_events(client, db, team, f"{team}late", 30, at("2026-09-26 08:00:00"), 3600, "now64(3)")
    # a sink whose clock is behind: ingested "before" the last build's newest row
    insert_events(client, db, OLD_TEAMS[1], f"{OLD_TEAMS[1]}skew", 20,
                  at("2026-10-02 09:00:00"), 3600, skewed)  # fmt: skip
    # a new day, and a team never seen before (a new billing line)
    insert_events(client, db, team, f"{team}new", 50, at("2026-10-06 00:00:00"), 86400, "now64(3)")
    insert_events(client, db, NEW_TEAM, f"{NEW_TEAM}h", 40, at("2026-10-05 12:00:00"), 7200,
                  "now64(3)")  # fmt: skip
    # engagement and unsubscribes of old messages, on old days
    for table, kind in (("raw_email_opens", "o2"), ("raw_email_clicks", "k2")):
        insert_engagement(client, db, table, OLD_TEAMS[2], f"{OLD_TEAMS[2]}{kind}",
                          f"{OLD_TEAMS[2]}h", 25, HISTORY, "now64(3)")  # fmt: skip
    insert_unsubscribes(client, db, OLD_TEAMS[1], f"{OLD_TEAMS[1]}u2", f"{OLD_TEAMS[1]}h", 4,
                        HISTORY, "now64(3)")  # fmt: skip
    insert_dmarc(client, db, OLD_TEAMS[1], f"{RUN}rk2", "2026-10-01")
    # at-least-once delivery: copies of loaded events, ingested again now
    for table in ("raw_message_events", "raw_email_opens", "raw_email_clicks", "raw_unsubscribes"):
        client.command(
            f"INSERT INTO {db}.{table} SELECT * REPLACE (now64(3) AS ingested_at)"
            f" FROM {db}.{table} WHERE team_id IN ({', '.join(repr(t) for t in OLD_TEAMS)})"
            f" AND ingested_at < now64(3) - toIntervalHour(1) LIMIT 40"
        )


def dbt_build(settings: Settings, work: Path, *extra: str) -> None:
    result = subprocess.run(
        [dbt_executable(), *BUILD_ARGS, *extra, "--project-dir", str(DBT_PROJECT_DIR),
         "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path", str(work / "target"),
         "--log-path", str(work / "logs")],
        env={**os.environ, **settings_to_env(settings)},
        capture_output=True, text=True, check=False, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:]


def snapshot(client: Any, db: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every model's rows, sorted, without the run stamp."""
    out = {}
    for model in MODELS:
        columns = [row[0] for row in client.query(f"DESCRIBE TABLE {db}.{model}").result_rows]
        kept = ", ".join(f"`{c}`" for c in columns if c != "loaded_by_run")
        out[model] = client.query(f"SELECT {kept} FROM {db}.{model} ORDER BY ALL").result_rows
    return out


def test_incremental_build_equals_a_full_rebuild(
    isolated_warehouse: Settings, tmp_path: Path
) -> None:
    from kibamail.clients import clickhouse_client

    client = clickhouse_client(isolated_warehouse)
    db = isolated_warehouse.clickhouse.database
    load_history(client, db)
    dbt_build(isolated_warehouse, tmp_path)
    first = snapshot(client, db)

    load_increment(client, db)
    dbt_build(isolated_warehouse, tmp_path)
    incremental = snapshot(client, db)
    dbt_build(isolated_warehouse, tmp_path)  # nothing new: must change nothing
    assert snapshot(client, db) == incremental

    dbt_build(isolated_warehouse, tmp_path, "--full-refresh")
    rebuilt = snapshot(client, db)
    for model in MODELS:
        assert incremental[model] == rebuilt[model], model
    # the increment did reach the marts (not a vacuous comparison)
    assert len(incremental["fct_message_events"]) == len(first["fct_message_events"]) + 2 * 140
    teams = {row[0] for row in incremental["int_billing_usage_monthly"]}
    assert NEW_TEAM in teams
    assert NEW_TEAM not in {row[0] for row in first["int_billing_usage_monthly"]}
    assert incremental["fct_deliverability_daily"] != first["fct_deliverability_daily"]
