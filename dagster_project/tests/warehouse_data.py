"""Precise raw events for the warehouse tests, on team ids unique to one test session."""

from __future__ import annotations

import uuid
from typing import Any

RUN = uuid.uuid4().hex[:8]
TEAM_SMALL = f"wh_{RUN}_small"  # 10,001 accepted in October: one started block
TEAM_EXAMPLE = f"wh_{RUN}_example"  # 25,000 accepted in October: $3.75
TEAM_IDLE = f"wh_{RUN}_idle"  # known to the API, no traffic


def insert_accepted(client: Any, database: str, team: str, count: int, prefix: str) -> None:
    """`count` accepted recipients in October 2026 (the last one at 23:59:59.999 on the 31st)."""
    client.command(
        f"""
        INSERT INTO {database}.raw_message_events
            (event_id, event_version, team_id, occurred_at, message_id, status, recipient,
             recipient_domain, sender_domain, kind, source_ip, tags)
        SELECT concat('{prefix}', toString(number)), 1, '{team}',
               if(number = {count - 1}, toDateTime64('2026-10-31 23:59:59.999', 3, 'UTC'),
                  toDateTime64('2026-10-01 00:00:00', 3, 'UTC') + toIntervalSecond(number * 60)),
               concat('{prefix}m', toString(number)), 'accepted',
               concat('r', toString(number), '@gmail.com'), 'gmail.com',
               'news.{team}.example', 'marketing', '', []
        FROM numbers({count})
        """
    )


def insert_deliveries(client: Any, database: str, team: str, count: int, prefix: str) -> None:
    """Deliveries of the first `count` accepted messages, from 192.0.2.10."""
    client.command(
        f"""
        INSERT INTO {database}.raw_message_events
            (event_id, event_version, team_id, occurred_at, message_id, status, recipient,
             recipient_domain, sender_domain, kind, source_ip, mx_host, smtp_code, tags)
        SELECT concat('{prefix}d', toString(number)), 1, '{team}',
               toDateTime64('2026-10-01 00:00:30', 3, 'UTC') + toIntervalSecond(number * 60),
               concat('{prefix}m', toString(number)), 'delivered',
               concat('r', toString(number), '@gmail.com'), 'gmail.com',
               'news.{team}.example', 'marketing', '192.0.2.10', 'mx.gmail.com', 250, []
        FROM numbers({count})
        """
    )


def insert_opens(client: Any, database: str, team: str, prefix: str, rows: list[tuple]) -> None:
    """rows: (event suffix, message number, is_machine)."""
    for suffix, message_number, is_machine in rows:
        client.command(
            f"""
            INSERT INTO {database}.raw_email_opens
                (event_id, event_version, team_id, occurred_at, message_id, country,
                 is_machine, is_first)
            VALUES ('{prefix}o{suffix}', 1, '{team}', '2026-10-01 00:05:00',
                    '{prefix}m{message_number}', 'DE', {int(is_machine)}, 0)
            """
        )


def load_all(client: Any, database: str, platform_team: str) -> None:
    insert_accepted(client, database, TEAM_SMALL, 10_001, f"{RUN}s")
    # platform notifications (invitations, digests) are sent under the platform team
    insert_accepted(client, database, platform_team, 12_000, f"{RUN}p")
    insert_accepted(client, database, TEAM_EXAMPLE, 25_000, f"{RUN}e")
    insert_deliveries(client, database, TEAM_EXAMPLE, 10, f"{RUN}e")
    # message 0: two human opens + one machine open; message 1: machine opens only.
    insert_opens(
        client,
        database,
        TEAM_EXAMPLE,
        f"{RUN}e",
        [("1", 0, False), ("2", 0, False), ("3", 0, True), ("4", 1, True), ("5", 1, True)],
    )
    insert_dmarc_records(client, database)


DMARC_DOMAIN = f"news.{RUN}.example"


def insert_dmarc_records(client: Any, database: str) -> None:
    """Two reporters about one domain on 2026-10-02; one report is ingested twice."""
    rows = [
        # report_key, index, reporter, source ip, count, disposition, dkim, spf, pass
        ("rk1", 0, "google.com", "192.0.2.10", 100, "none", 1, 1, 1),
        ("rk1", 1, "google.com", "203.0.113.9", 5, "quarantine", 0, 0, 0),
        ("rk2", 0, "yahoo.com", "192.0.2.10", 40, "none", 1, 0, 1),
        ("rk2", 0, "yahoo.com", "192.0.2.10", 40, "none", 1, 0, 1),  # re-ingested
    ]
    for key, index, org, ip, count, disposition, dkim, spf, passed in rows:
        client.command(
            f"""
            INSERT INTO {database}.raw_dmarc_records
                (report_key, record_index, team_id, domain, org_name, report_id, day,
                 begin_at, end_at, source_ip, message_count, disposition, dkim_aligned,
                 spf_aligned, dmarc_pass, header_from, policy_p)
            VALUES ('{RUN}{key}', {index}, '{TEAM_EXAMPLE}', '{DMARC_DOMAIN}', '{org}', '{key}',
                    '2026-10-02', '2026-10-02 00:00:00', '2026-10-02 23:59:59', '{ip}', {count},
                    '{disposition}', {dkim}, {spf}, {passed}, '{DMARC_DOMAIN}', 'quarantine')
            """
        )
