"""Gateway vs in-process chDB: insert and read throughput through clickhouse-connect.

``python -m bench.warehouse [--rows N] [--batch N]`` starts the real gateway
(``kibamail warehouse serve``) on a free loopback port with a temp data dir, inserts the same
realistic raw message events through it (HTTP, clickhouse-connect's default compression) and
into an in-process chDB (``get_client(dsn="chdb://...")``, separate dir), reads them back both
ways, and prints one JSON line. The DoD target: gateway inserts >= 70% of in-process.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import clickhouse_connect

from kibamail.settings import ClickHouseSettings, Settings, StackSettings
from local_stack.services import warehouse_spec
from local_stack.stack import Stack, free_port

from .report import RunMeter, finish

TARGET_INSERT_RATIO = 0.7
READS = 3
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
    gc.disable()  # millions of new objects: collecting them midway is pure overhead
    try:
        return _columns_to_rows(rng, start, count)
    finally:
        gc.enable()


def _columns_to_rows(rng: random.Random, start: datetime, count: int) -> list[list[Any]]:
    outcome = [OUTCOMES[rng.randrange(len(OUTCOMES))] for _ in range(count)]
    domain = [DOMAINS[rng.randrange(len(DOMAINS))] for _ in range(count)]
    columns = [
        [f"{rng.getrandbits(128):032x}" for _ in range(count)],
        [f"team_{(i // 2) % 37:04d}" for i in range(count)],
        [start + timedelta(milliseconds=i * 7) for i in range(count)],
        [f"<{i // 2:012d}.{rng.getrandbits(32):08x}@mta.kibamail.local>" for i in range(count)],
        [o[0] for o in outcome],
        [f"user{rng.randrange(1_000_000)}@{d}" for d in domain],
        domain,
        [o[1] for o in outcome],
        [o[2] for o in outcome],
        [f"mta-{i % 3}" for i in range(count)],
        [1 + (i % 3 == 0) for i in range(count)],
        [rng.randrange(2_000, 200_000) for _ in range(count)],
    ]
    return [list(row) for row in zip(*columns, strict=True)]


def create(client: Any, table: str) -> None:
    client.command(f"DROP TABLE IF EXISTS {table}")
    client.command(DDL.format(table=table))


def timed_insert(client: Any, table: str, rows: list[list[Any]]) -> float:
    started = time.perf_counter()
    client.insert(table, rows, column_names=COLUMNS)
    return time.perf_counter() - started


# Row-count mismatches seen (inserted rows missing or read back short): the run is then
# ``"complete": false`` and meets no target.
MISMATCHES: list[str] = []


def timed_read(client: Any, table: str, expected: int) -> float:
    """Count, then read three columns of every row into Python objects."""
    count = int(client.command(f"SELECT count() FROM {table}"))
    if count != expected:
        MISMATCHES.append(f"{table}: expected {expected} rows, found {count}")
    started = time.perf_counter()
    result = client.query(f"SELECT event_id, occurred_at, status FROM {table}")
    read = len(result.result_rows)
    elapsed = time.perf_counter() - started
    if read != expected:
        MISMATCHES.append(f"{table}: read {read} rows, expected {expected}")
    return elapsed


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def compare(
    gateway: Any, inprocess: Any, rows: list[list[Any]], batch: int, gateway_pid: int
) -> dict[str, float]:
    """Alternate the two paths batch by batch (and read by read), so both see the same
    machine load; this box is shared with other jobs and has two cores. Throughput is
    computed from the median batch time (and the best of READS reads), the same robust
    estimator for both paths, so a burst of outside load does not decide the ratio."""
    sides = {"gateway": gateway, "inprocess": inprocess}
    for client in sides.values():
        create(client, "events")
    batches: dict[str, list[float]] = {name: [] for name in sides}
    client_cpu = dict.fromkeys(sides, 0.0)
    server_cpu = 0.0
    for number, offset in enumerate(range(0, len(rows), batch)):
        chunk = rows[offset : offset + batch]
        order = list(sides) if number % 2 == 0 else list(reversed(sides))
        for name in order:
            cpu, server = time.process_time(), process_cpu(gateway_pid)
            batches[name].append(timed_insert(sides[name], "events", chunk) / len(chunk))
            client_cpu[name] += time.process_time() - cpu
            if name == "gateway":
                server_cpu += process_cpu(gateway_pid) - server
    read_s = {name: float("inf") for name in sides}
    for _ in range(READS):
        for name, client in sides.items():
            read_s[name] = min(read_s[name], timed_read(client, "events", len(rows)))
    insert_s = {name: statistics.median(per_row) * len(rows) for name, per_row in batches.items()}
    print(
        f"insert CPU seconds: gateway path {client_cpu['gateway']:.2f} client + "
        f"{server_cpu:.2f} gateway; in-process {client_cpu['inprocess']:.2f}; total insert wall "
        f"{sum(batches['gateway']) * batch:.2f} s vs {sum(batches['inprocess']) * batch:.2f} s; "
        f"load average "
        f"{os.getloadavg()[0]:.1f}",
        file=sys.stderr,
    )
    return {
        **{f"{name}_insert_s": value for name, value in insert_s.items()},
        **{f"{name}_read_s": value for name, value in read_s.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=50_000, help="rows per insert call")
    args = parser.parse_args()

    rows = make_rows(args.rows)
    # A million live rows make every full GC pass cost ~1 s; measure the paths, not the GC.
    gc.collect()
    gc.freeze()
    work = Path(tempfile.mkdtemp(prefix="kibamail-bench-warehouse-"))
    settings = Settings(
        environment="development",  # no warehouse token: auth off (development only)
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
        # Warm both paths (imports, codecs, first parts) outside the timed runs.
        warm = rows[:1000]
        for client in (gateway, inprocess):
            create(client, "warmup")
            timed_insert(client, "warmup", warm)
            timed_read(client, "warmup", len(warm))
        pid = stack.running_pid("warehouse")
        assert pid is not None
        meter = RunMeter()
        meter.add("gateway", pid)
        meter.add_self("bench_process (client + in-process chDB)")
        meter.start()
        seconds = compare(gateway, inprocess, rows, args.batch, pid)
        report = meter.stop()
        gateway.close()
        inprocess.close()
    finally:
        stack.stop("warehouse")
        shutil.rmtree(work, ignore_errors=True)

    n = len(rows)
    gw_insert, ip_insert = n / seconds["gateway_insert_s"], n / seconds["inprocess_insert_s"]
    gw_read, ip_read = n / seconds["gateway_read_s"], n / seconds["inprocess_read_s"]
    ratio = gw_insert / ip_insert
    result = {
        "bench": "warehouse",
        "mode": "gateway over HTTP vs in-process chDB",
        "rows": n,
        "gateway_insert_rows_per_s": round(gw_insert),
        "inprocess_insert_rows_per_s": round(ip_insert),
        "insert_ratio": round(ratio, 3),
        "gateway_read_rows_per_s": round(gw_read),
        "inprocess_read_rows_per_s": round(ip_read),
        "read_ratio": round(gw_read / ip_read, 3),
        "target_insert_ratio": TARGET_INSERT_RATIO,
        "row_count_mismatches": MISMATCHES,
        **report,
    }  # fmt: skip
    finish(result, not MISMATCHES, {"insert_ratio_ge_0_7": ratio >= TARGET_INSERT_RATIO})
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
