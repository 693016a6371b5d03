"""p95 latency of every customer self-service read on the demo data set (target < 200 ms).

``python -m bench.self_service [--events N] [--requests R]`` starts the warehouse gateway
and a redis-server on free loopback ports in a temp dir, loads the synthetic demo data
(bench/models_data.py: N message events over 30 days for 20 teams, opens and clicks, DMARC
records, plus TLS, failure and domain-check reports and three closed invoices), builds the
marts with dbt over the gateway (the path production uses), creates the API team
``team_0`` (the generator's id) with an Administrator API key and its sending domain, then
calls each read R times through the API (in process, FastAPI's TestClient: routing,
authentication with its Redis round trip, the ClickHouse query over HTTP) and prints ONE
JSON line: p50/p95/max milliseconds per read, the slowest p95 and whether every read met
the target. ``complete`` is false when a read answered anything but 200 or a build failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.models_data import SyntheticBatch, dmarc_records_sql, load
from bench.report import RunMeter, finish
from dagster_project.project import DBT_PROJECT_DIR, dbt_executable
from kibamail.settings import DatabaseSettings, RedisSettings, Settings, settings_to_env
from local_stack.services import redis_spec
from local_stack.stack import free_port
from testing.clickhouse_gateway import start_gateway

TARGET_MS = 200.0
TEAM = "team_0"
DOMAIN = "mail0.team0.example"  # the generator's domain of team_0 (dmarc_records_sql)
MARTS = [
    "+fct_billing_monthly", "+fct_deliverability_daily", "+fct_bounces_daily",
    "+fct_reputation_daily", "+fct_dmarc_daily",
]  # fmt: skip


def seed_reports(client: Any, db: str, today: str) -> None:
    """The report tables that have no generator: a few rows each, like a small team's."""
    client.command(
        f"INSERT INTO {db}.raw_tls_reports (report_key, policy_index, team_id, "
        "organization_name, report_id, begin_at, end_at, policy_domain, policy_type, "
        "successful_sessions, failed_sessions, failure_details_json) SELECT "
        f"concat('tls', toString(number)), 0, '{TEAM}', 'Google Inc.', toString(number), "
        f"toDateTime('{today} 00:00:00') - toIntervalDay(number), "
        f"toDateTime('{today} 23:59:59') - toIntervalDay(number), '{DOMAIN}', 'sts', "
        "1000, number % 5, '[]' FROM numbers(60)"
    )
    client.command(
        f"INSERT INTO {db}.raw_dmarc_failure_reports (report_key, team_id, reported_domain, "
        f"arrival_at, source_ip, original_subject) SELECT concat('ruf', toString(number)), "
        f"'{TEAM}', '{DOMAIN}', toDateTime('{today} 00:00:00') - toIntervalHour(number), "
        "concat('203.0.113.', toString(number % 250)), 'invoice' FROM numbers(500)"
    )
    client.command(
        f"INSERT INTO {db}.raw_domain_checks (event_id, event_version, team_id, occurred_at, "
        "domain, record, previous_status, current_status, checked_at) SELECT "
        f"concat('dc', toString(number)), 1, '{TEAM}', now64(3) - toIntervalHour(number), "
        f"'{DOMAIN}', ['spf', 'dkim', 'dmarc'][number % 3 + 1], 'pass', 'fail', "
        "now64(3) - toIntervalHour(number) FROM numbers(200)"
    )
    client.command(
        f"INSERT INTO {db}.billing_invoices (invoice_id, team_id, billing_month, "
        "accepted_recipients, amount_micros, currency, lines) SELECT "
        f"concat('inv_', formatDateTime(m, '%Y%m'), '_{TEAM}'), '{TEAM}', m, 50000, 10000000, "
        "'USD', '[]' FROM (SELECT addMonths(toStartOfMonth(today()), -1 - number) AS m "
        "FROM numbers(3))"
    )


def create_team(settings: Settings) -> tuple[str, str, str]:
    """team_0 in the API database: an Administrator, a full key, the sending domain."""
    from api.db import make_engine, make_sessionmaker, migrate
    from api.models import ApiKeyScope, Membership, Role, Team
    from api.services.accounts import create_api_key, create_user
    from api.services.domains import generate_keys

    migrate(settings.database.url)
    engine = make_engine(settings.database.url)
    with make_sessionmaker(engine).begin() as db:
        user = create_user(db, "bench@example.com", "long enough password", verified=True)
        db.add(Team(id=TEAM, name="demo", created_by=user.id))
        db.flush()
        db.add(Membership(team_id=TEAM, user_id=user.id, role=Role.ADMIN.value))
        _row, key = create_api_key(
            db, TEAM, "bench", ApiKeyScope.FULL, role=Role.ADMIN, created_by=user.id
        )
        domain = generate_keys(DOMAIN, TEAM)
        db.add(domain)
        db.flush()
        domain_id = domain.id
    engine.dispose()
    last_month = (datetime.now(UTC).date().replace(day=1) - timedelta(days=1)).replace(day=1)
    return key, domain_id, f"inv_{last_month:%Y%m}_{TEAM}"


def reads(domain_id: str, invoice_id: str) -> dict[str, str]:
    base, dmarc = f"/v1/teams/{TEAM}", f"/v1/teams/{TEAM}/dmarc/domains/{DOMAIN}"
    return {
        "usage": f"{base}/usage",
        "usage_months": f"{base}/usage/months",
        "usage_breakdown": f"{base}/usage/breakdown",
        "invoices": f"{base}/invoices",
        "invoice": f"{base}/invoices/{invoice_id}",
        "deliverability_daily": f"{base}/deliverability/daily",
        "deliverability_providers": f"{base}/deliverability/providers",
        "bounce_reasons": f"{base}/deliverability/bounces",
        "domain_checks": f"{base}/domains/{domain_id}/checks",
        "dmarc_daily": f"{dmarc}/daily",
        "dmarc_failing_sources": f"{dmarc}/failing-sources",
        "tls_reports": f"{dmarc}/tls-reports",
        "forensic_reports": f"{dmarc}/forensic-reports",
        "reputation": f"{base}/reputation",
        "reputation_daily": f"{base}/reputation/daily",
    }


class NoEvents:
    """The reads produce no events: no Kafka client (and no broker) for the API here."""

    def produce(self, *args: Any, **kwargs: Any) -> None:
        return None

    def flush(self, timeout: float = 0) -> int:
        return 0

    def close(self, timeout: float = 0) -> int:
        return 0


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run(events: int, requests: int, keep: bool) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from api.app import create_app

    state = Path(tempfile.mkdtemp(prefix="bench-self-service-"))
    gateway = start_gateway(state, database="bench_self_service")
    try:
        settings = gateway.settings.model_copy(
            update={
                "redis": RedisSettings(url=f"redis://127.0.0.1:{free_port()}/0", durability="none"),
                "database": DatabaseSettings(url=f"sqlite:///{state / 'api.db'}"),
            }
        )
        gateway.stack.start(redis_spec(settings, durable=False))
        from kibamail.clients import migrate_warehouse

        migrate_warehouse(settings)
        client = gateway.client()
        db = settings.clickhouse.database
        today = datetime.now(UTC).date()
        start = datetime(today.year, today.month, today.day, tzinfo=UTC) - timedelta(days=30)
        began = time.perf_counter()
        load(client, db, SyntheticBatch(events, events // 10, events // 10, start, days=31))
        client.command(dmarc_records_sql(db, start, 31, max(events // 50, 1000), teams=20))
        seed_reports(client, db, today.isoformat())
        load_seconds = time.perf_counter() - began
        began = time.perf_counter()
        build = subprocess.run(
            [dbt_executable(), "run", "--select", *MARTS,
             "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
             "--target-path", str(state / "target"), "--log-path", str(state / "logs")],
            env={**os.environ, **settings_to_env(settings)},
            capture_output=True, text=True, check=False, timeout=1800,
        )  # fmt: skip
        build_seconds = time.perf_counter() - began
        key, domain_id, invoice_id = create_team(settings)
        auth = {"Authorization": f"Bearer {key}"}
        meter = RunMeter()
        meter.add("gateway_clickhouse", gateway.stack.running_pid(gateway.name))
        meter.add_self("api_in_bench_process")
        timings: dict[str, list[float]] = {}
        statuses: dict[str, set[int]] = {}
        with TestClient(create_app(settings, producer=NoEvents(), run_scheduler=False)) as api:
            for path in reads(domain_id, invoice_id).values():
                api.get(path, headers=auth)  # warm: first-use caches, query plans
            meter.start()
            for _ in range(requests):
                for name, path in reads(domain_id, invoice_id).items():
                    t0 = time.perf_counter()
                    answer = api.get(path, headers=auth)
                    timings.setdefault(name, []).append((time.perf_counter() - t0) * 1000)
                    statuses.setdefault(name, set()).add(answer.status_code)
            report = meter.stop()
        p95 = {name: round(percentile(ms, 0.95), 1) for name, ms in timings.items()}
        per_read = {
            name: {
                "p50_ms": round(statistics.median(ms), 1),
                "p95_ms": p95[name],
                "max_ms": round(max(ms), 1),
                "statuses": sorted(statuses[name]),
            }
            for name, ms in timings.items()
        }
        slowest_name = max(p95, key=lambda name: p95[name])
        ok = build.returncode == 0 and all(statuses[name] == {200} for name in timings)
        result = {
            "benchmark": "self_service",
            "message_events": events,
            "requests_per_read": requests,
            "load_seconds": round(load_seconds, 2),
            "dbt_run_seconds": round(build_seconds, 2),
            "dbt_errors": "" if build.returncode == 0 else build.stdout[-1500:],
            "target_p95_ms": TARGET_MS,
            "slowest_read": slowest_name,
            "slowest_p95_ms": p95[slowest_name],
            "reads": per_read,
            "reads_run": report,
        }
        return finish(result, ok, {"every_read_p95_lt_200_ms": p95[slowest_name] < TARGET_MS})
    finally:
        gateway.stack.stop_all()
        if not keep:
            shutil.rmtree(state, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--keep", action="store_true", help="Keep the temp dir.")
    args = parser.parse_args(argv)
    result = run(args.events, args.requests, args.keep)
    print(json.dumps(result), flush=True)
    return 0 if result["complete"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
