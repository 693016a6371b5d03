"""Gateway vs in-process chDB: insert and read throughput through clickhouse-connect.

``python -m bench.warehouse [--rows N] [--batch N]`` starts the real gateway
(``kibamail warehouse serve``) on a free loopback port with a temp data dir, inserts the same
realistic raw message events through it (HTTP, clickhouse-connect's default compression) and
into an in-process chDB (``get_client(dsn="chdb://...")``, separate dir), reads them back both
ways, and prints one JSON line. The DoD target: gateway inserts >= 70% of in-process.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import clickhouse_connect

from infra.services import warehouse_spec
from infra.stack import Stack, free_port
from kibamail.settings import ClickHouseSettings, Settings, StackSettings

TARGET_INSERT_RATIO = 0.7
COLUMNS = (
    "event_id", "team_id", "occurred_at", "message_id", "status", "recipient",
    "recipient_domain", "smtp_code", "smtp_response", "mta_host", "attempt", "size_bytes",
)  # fmt: skip
DDL = """
CREATE TABLE {table} (
    event_id String,
    team_id String,
    occurred_at DateTime64(3, 'UTC'),
    message_id String,
    status LowCardinality(String),
    recipient String,
    recipient_domain LowCardinality(String),
    smtp_code UInt16,
    smtp_response String,
    mta_host LowCardinality(String),
    attempt UInt8,
    size_bytes UInt32
) ENGINE = MergeTree ORDER BY (team_id, occurred_at, event_id)
"""
DOMAINS = ("gmail.com", "outlook.com", "yahoo.com", "icloud.com", "gmx.de", "example.org")
OUTCOMES = (
    ("delivered", 250, "250 2.0.0 OK 1732761600 d2e1a72fcca58-7246 - gsmtp"),
    ("deferred", 421, "421 4.7.0 Try again later, closing connection."),
    ("bounced", 550, "550 5.1.1 The email account that you tried to reach does not exist."),
    ("accepted", 0, ""),
)


def make_rows(count: int, seed: int = 7) -> list[list[Any]]:
    """Raw message events, shaped like the MTA's status events (deterministic)."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    rows = []
    for i in range(count):
        status, code, response = OUTCOMES[rng.randrange(len(OUTCOMES))]
        domain = DOMAINS[rng.randrange(len(DOMAINS))]
        message = i // 2
        rows.append([
            f"{rng.getrandbits(128):032x}",
            f"team_{message % 37:04d}",
            start + timedelta(milliseconds=i * 7),
            f"<{message:012d}.{rng.getrandbits(32):08x}@mta.kibamail.local>",
            status,
            f"user{rng.randrange(1_000_000)}@{domain}",
            domain,
            code,
            response,
            f"mta-{i % 3}",
            1 + (i % 3 == 0),
            rng.randrange(2_000, 200_000),
        ])  # fmt: skip
    return rows


def run_side(client: Any, table: str, rows: list[list[Any]], batch: int) -> dict[str, float]:
    """Create, insert in batches, count, read three columns fully; seconds for each."""
    client.command(f"DROP TABLE IF EXISTS {table}")
    client.command(DDL.format(table=table))
    started = time.perf_counter()
    for offset in range(0, len(rows), batch):
        client.insert(table, rows[offset : offset + batch], column_names=COLUMNS)
    insert_s = time.perf_counter() - started
    count = int(client.command(f"SELECT count() FROM {table}"))
    if count != len(rows):
        raise SystemExit(f"{table}: expected {len(rows)} rows, found {count}")
    started = time.perf_counter()
    result = client.query(f"SELECT event_id, occurred_at, status FROM {table}")
    read = len(result.result_rows)
    read_s = time.perf_counter() - started
    if read != len(rows):
        raise SystemExit(f"{table}: read {read} rows, expected {len(rows)}")
    return {"insert_s": insert_s, "read_s": read_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=50_000, help="rows per insert call")
    args = parser.parse_args()

    rows = make_rows(args.rows)
    work = Path(tempfile.mkdtemp(prefix="kibamail-bench-warehouse-"))
    settings = Settings(
        environment="bench",
        clickhouse=ClickHouseSettings(
            port=free_port(), data_dir=work / "gateway-chdb", database="bench"
        ),
        stack=StackSettings(state_dir=work / "stack"),
    )
    stack = Stack(settings.stack.state_dir)
    try:
        stack.start(warehouse_spec(settings))
        gateway = clickhouse_connect.get_client(
            host="127.0.0.1", port=settings.clickhouse.port, database="bench"
        )
        inprocess = clickhouse_connect.get_client(dsn=f"chdb://{work / 'inprocess-chdb'}")
        inprocess.command("CREATE DATABASE IF NOT EXISTS bench")
        inprocess.database = "bench"
        # Warm both paths (imports, first-part creation) outside the timed runs.
        warm = rows[:1000]
        run_side(gateway, "warmup", warm, 1000)
        run_side(inprocess, "warmup", warm, 1000)
        via_gateway = run_side(gateway, "events_gateway", rows, args.batch)
        in_process = run_side(inprocess, "events_inprocess", rows, args.batch)
        gateway.close()
        inprocess.close()
    finally:
        stack.stop("warehouse")
        shutil.rmtree(work, ignore_errors=True)

    n = len(rows)
    gw_insert, ip_insert = n / via_gateway["insert_s"], n / in_process["insert_s"]
    gw_read, ip_read = n / via_gateway["read_s"], n / in_process["read_s"]
    ratio = gw_insert / ip_insert
    print(json.dumps({
        "bench": "warehouse",
        "rows": n,
        "gateway_insert_rows_per_s": round(gw_insert),
        "inprocess_insert_rows_per_s": round(ip_insert),
        "insert_ratio": round(ratio, 3),
        "gateway_read_rows_per_s": round(gw_read),
        "inprocess_read_rows_per_s": round(ip_read),
        "read_ratio": round(gw_read / ip_read, 3),
        "target_insert_ratio": TARGET_INSERT_RATIO,
        "meets_target": ratio >= TARGET_INSERT_RATIO,
    }))  # fmt: skip
    sys.stdout.flush()


if __name__ == "__main__":
    main()
