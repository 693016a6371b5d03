"""Self-service reads against the marts, built by dbt on real rows in the embedded stack's
warehouse (chDB gateway), for two teams: each reads exactly its own numbers, and every new
path given the other team's ids or domains answers 404 without a trace of the other team.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from api.bootstrap import create_team_with_key
from api.models import Domain
from api.tests.conftest import RecordingProducer
from dagster_project.project import DBT_PROJECT_DIR, dbt_executable
from kibamail.settings import Settings, settings_to_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

MARTS = (
    "+fct_billing_monthly +fct_deliverability_daily +fct_bounces_daily +fct_reputation_daily "
    "+fct_dmarc_daily +fct_usage_by_source_monthly"
)
TODAY = datetime.now(UTC).date()
NOW = f"{TODAY.isoformat()} 00:00:00"


@dataclass
class Tenant:
    team_id: str
    key: str
    domain: str
    domain_id: str
    invoice_id: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def paths(t: Tenant) -> list[str]:
    """Every self-service read, for tenant t's ids and domain."""
    base, dmarc = f"/v1/teams/{t.team_id}", f"/v1/teams/{t.team_id}/dmarc/domains/{t.domain}"
    return [
        f"{base}/usage",
        f"{base}/usage/months",
        f"{base}/usage/breakdown",
        f"{base}/invoices",
        f"{base}/invoices/{t.invoice_id}",
        f"{base}/deliverability/daily",
        f"{base}/deliverability/providers",
        f"{base}/deliverability/bounces",
        f"{base}/domains/{t.domain_id}/checks",
        f"{dmarc}/daily",
        f"{dmarc}/failing-sources",
        f"{dmarc}/tls-reports",
        f"{dmarc}/forensic-reports",
        f"{base}/reputation",
        f"{base}/reputation/daily",
    ]


def _tenant(settings: Settings, name: str) -> Tenant:
    from api.db import make_engine, make_sessionmaker

    suffix = uuid.uuid4().hex[:8]
    domain = f"{name}{suffix}.example.com"
    team_id, key = create_team_with_key(
        settings, email=f"{name}-{suffix}@example.com", team_name=name, domain=domain
    )
    engine = make_engine(settings.database.url)
    with make_sessionmaker(engine)() as db:
        domain_id = db.scalar(select(Domain.id).where(Domain.team_id == team_id))
    engine.dispose()
    last_month = (TODAY.replace(day=1) - timedelta(days=1)).replace(day=1)
    return Tenant(team_id, key, domain, str(domain_id), f"inv_{last_month:%Y%m}_{team_id}")


def _events(t: Tenant, prefix: str) -> list[str]:
    """(id, status, recipient, provider group, reason, action, class, broadcast) rows."""
    rows = [
        ("a1", "accepted", "u1@gmail.com", "", "", "", "", "b1"),
        ("a2", "accepted", "u2@gmail.com", "", "", "", "", "b1"),
        ("a3", "accepted", "u3@gmail.com", "", "", "", "", ""),
        ("a4", "accepted", "u4@outlook.com", "", "", "", "", ""),
        ("a5", "accepted", "u5@outlook.com", "", "", "", "", ""),
        ("a6", "accepted", "u6@yahoo.com", "", "", "", "", ""),
        ("d1", "delivered", "u1@gmail.com", "google", "", "", "", "b1"),
        ("d2", "delivered", "u2@gmail.com", "google", "", "", "", "b1"),
        ("d3", "delivered", "u3@gmail.com", "google", "", "", "", ""),
        ("d4", "delivered", "u4@outlook.com", "microsoft", "", "", "", ""),
        ("f5", "deferred", "u5@outlook.com", "microsoft", "rate_limited", "retry", "", ""),
        ("b6", "bounced", "u6@yahoo.com", "", "user_unknown", "suppress", "hard", ""),
        ("c1", "complained", "u1@gmail.com", "google", "complaint", "suppress", "", "b1"),
    ]
    message = {"u1": "1", "u2": "2", "u3": "3", "u4": "4", "u5": "5", "u6": "6"}
    return [
        f"('{prefix}{eid}', 1, '{t.team_id}', toDateTime64('{NOW}', 3, 'UTC') + "
        f"toIntervalSecond({i}), '{prefix}m{message[rcpt[:2]]}', '{status}', '{rcpt}', "
        f"'{rcpt.split('@')[1]}', '{t.domain}', 'transactional', '192.0.2.10', '{group}', "
        f"'{reason}', '{action}', '{cls}', '{broadcast}', [])"
        for i, (eid, status, rcpt, group, reason, action, cls, broadcast) in enumerate(rows)
    ]


def _seed(client: Any, db: str, t: Tenant, prefix: str) -> None:
    client.command(
        f"INSERT INTO {db}.raw_message_events (event_id, event_version, team_id, occurred_at, "
        "message_id, status, recipient, recipient_domain, sender_domain, kind, source_ip, "
        "provider_group, bounce_reason, bounce_action, bounce_class, broadcast_id, tags) "
        f"VALUES {', '.join(_events(t, prefix))}"
    )
    client.command(
        f"INSERT INTO {db}.raw_email_opens (event_id, event_version, team_id, occurred_at, "
        f"message_id, is_machine) VALUES ('{prefix}o1', 1, '{t.team_id}', "
        f"toDateTime64('{NOW}', 3, 'UTC') + toIntervalMinute(5), '{prefix}m1', 0), "
        f"('{prefix}o2', 1, '{t.team_id}', toDateTime64('{NOW}', 3, 'UTC') + "
        f"toIntervalMinute(6), '{prefix}m2', 1)"
    )
    day = TODAY.isoformat()
    records = [  # (index, source ip, org, messages, dmarc pass)
        (0, "192.0.2.10", "google.com", 40, 1),
        (1, "203.0.113.9", "google.com", 7, 0),
        (2, "203.0.113.9", "Yahoo", 5, 0),
        (3, "198.51.100.4", "Yahoo", 2, 0),
    ]
    client.command(
        f"INSERT INTO {db}.raw_dmarc_records (report_key, record_index, team_id, domain, "
        "org_name, report_id, day, begin_at, end_at, source_ip, message_count, disposition, "
        "dkim_aligned, spf_aligned, dmarc_pass, policy_p) VALUES "
        + ", ".join(
            f"('{prefix}rk{org}', {i}, '{t.team_id}', '{t.domain}', '{org}', 'r-{org}', "
            f"'{day}', '{day} 00:00:00', '{day} 23:59:59', '{ip}', {n}, "
            f"'{'none' if ok else 'reject'}', {ok}, {ok}, {ok}, 'reject')"
            for i, ip, org, n, ok in records
        )
    )
    client.command(
        f"INSERT INTO {db}.raw_tls_reports (report_key, policy_index, team_id, "
        "organization_name, report_id, begin_at, end_at, policy_domain, policy_type, mx_hosts, "
        "successful_sessions, failed_sessions, failure_details_json) VALUES "
        f"('{prefix}tls', 0, '{t.team_id}', 'Google Inc.', 'tls-{prefix}', '{day} 00:00:00', "
        f"'{day} 23:59:59', '{t.domain}', 'sts', ['mx.{t.domain}'], 120, 3, "
        '\'[{"result-type": "certificate-expired", "failed-session-count": 3}]\')'
    )
    client.command(
        f"INSERT INTO {db}.raw_dmarc_failure_reports (report_key, team_id, reported_domain, "
        "arrival_at, source_ip, feedback_type, auth_failure, original_from, original_subject) "
        f"VALUES ('{prefix}ruf', '{t.team_id}', '{t.domain}', '{day} 08:00:00', '203.0.113.9', "
        f"'auth-failure', 'dmarc', 'billing@{t.domain}', 'Your invoice {prefix}')"
    )
    client.command(
        f"INSERT INTO {db}.raw_domain_checks (event_id, event_version, team_id, occurred_at, "
        "domain, record, previous_status, current_status, reason, checked_at) VALUES "
        f"('{prefix}dc', 1, '{t.team_id}', '{day} 09:00:00', '{t.domain}', 'dkim', 'pass', "
        f"'fail', 'selector record missing', '{day} 09:00:00')"
    )
    month = (TODAY.replace(day=1) - timedelta(days=1)).replace(day=1)
    client.command(
        f"INSERT INTO {db}.billing_invoices (invoice_id, team_id, billing_month, "
        "accepted_recipients, free_recipients, billable_blocks, amount_micros, currency, lines) "
        f"VALUES ('{t.invoice_id}', '{t.team_id}', '{month}', 12001, 10000, 3, 750000, 'USD', "
        '\'[{"description": "Included emails", "quantity": 10000, "amount_micros": 0}]\')'
    )


@pytest.fixture(scope="module")
def world(
    api_settings: Settings, isolated_warehouse: Settings, redis_service: str, tmp_path_factory: Any
) -> Iterator[tuple[TestClient, Tenant, Tenant]]:
    from kibamail.clients import clickhouse_client

    settings = api_settings.model_copy(update={"clickhouse": isolated_warehouse.clickhouse})
    a, b = _tenant(settings, "alpha"), _tenant(settings, "bravo")
    ch: Any = clickhouse_client(settings)
    db = settings.clickhouse.database
    _seed(ch, db, a, "A")
    _seed(ch, db, b, "B")
    work = tmp_path_factory.mktemp("dbt")
    result = subprocess.run(
        [dbt_executable(), "run", "--select", *MARTS.split(),
         "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
         "--target-path", str(work / "target"), "--log-path", str(work / "logs")],
        env={**os.environ, **settings_to_env(settings)},
        capture_output=True, text=True, check=False, timeout=800,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    app = create_app(settings, producer=RecordingProducer(), run_scheduler=False)
    with TestClient(app) as client:
        yield client, a, b


def test_usage_invoices_and_breakdown(world: tuple[TestClient, Tenant, Tenant]) -> None:
    client, a, _b = world
    usage = client.get(f"/v1/teams/{a.team_id}/usage", headers=a.auth).json()
    assert usage["recipients"] == 6
    assert usage["free_remaining"] == 10_000 - 6 and usage["charge_micros"] == 0
    assert usage["projected_recipients"] >= 6 and usage["currency"] == "USD"
    assert usage["as_of"].endswith("Z")
    months = client.get(f"/v1/teams/{a.team_id}/usage/months", headers=a.auth).json()
    assert months["data"][0]["month"] == TODAY.strftime("%Y-%m")
    assert months["data"][0]["recipients"] == 6
    invoices = client.get(f"/v1/teams/{a.team_id}/invoices", headers=a.auth).json()
    assert [i["invoice_id"] for i in invoices["data"]] == [a.invoice_id]
    one = client.get(f"/v1/teams/{a.team_id}/invoices/{a.invoice_id}", headers=a.auth).json()
    assert one["amount"] == "0.75" and one["lines"][0]["quantity"] == 10000
    assert one["closed_at"].endswith("Z")
    split = client.get(f"/v1/teams/{a.team_id}/usage/breakdown", headers=a.auth).json()
    assert {(r["broadcast_id"], r["recipients"]) for r in split["by_broadcast"]} == {
        ("b1", 2),
        (None, 4),
    }
    # Seeded rows name no key or credential (as before migration 0007): all unattributed
    # but the broadcast's (api/tests/test_usage_by_source.py sends through real keys).
    assert (split["by_api_key"], split["by_smtp_credential"]) == ([], [])
    assert split["unattributed_recipients"] == 4


def test_deliverability_per_provider_day_and_bounce_reasons(
    world: tuple[TestClient, Tenant, Tenant],
) -> None:
    client, a, _b = world
    base = f"/v1/teams/{a.team_id}/deliverability"
    providers = {
        r["provider"]: r for r in client.get(f"{base}/providers", headers=a.auth).json()["data"]
    }
    assert set(providers) == {"google", "microsoft", "yahoo"}
    google = providers["google"]
    assert (google["sent"], google["delivered"], google["complained"]) == (3, 3, 1)
    assert (google["unique_opens"], google["machine_opens"]) == (1, 1)  # machine kept apart
    assert (providers["microsoft"]["deferred"], providers["yahoo"]["bounced"]) == (1, 1)
    first = client.get(f"{base}/daily", params={"limit": 2}, headers=a.auth).json()
    assert len(first["data"]) == 2 and first["data"][0]["day"] == TODAY.isoformat()
    rest = client.get(
        f"{base}/daily", params={"limit": 2, "cursor": first["next_cursor"]}, headers=a.auth
    ).json()
    assert rest["next_cursor"] is None
    seen = [r["provider"] for r in first["data"] + rest["data"]]
    assert sorted(seen) == ["google", "microsoft", "yahoo"]
    reasons = client.get(f"{base}/bounces", headers=a.auth).json()["data"]
    assert {(r["reason"], r["action"], r["provider"]) for r in reasons} == {
        ("user_unknown", "suppress", "yahoo"),
        ("rate_limited", "retry", "microsoft"),
        ("complaint", "suppress", "google"),
    }


def test_dmarc_tls_forensic_and_domain_checks(world: tuple[TestClient, Tenant, Tenant]) -> None:
    client, a, _b = world
    base = f"/v1/teams/{a.team_id}/dmarc/domains/{a.domain}"
    daily = client.get(f"{base}/daily", headers=a.auth).json()["data"]
    by_ip = {r["source_ip"]: r for r in daily}
    assert by_ip["192.0.2.10"]["dmarc_pass"] == 40
    assert by_ip["203.0.113.9"]["dmarc_fail"] == 12
    assert sorted(by_ip["203.0.113.9"]["reporters"]) == ["Yahoo", "google.com"]
    failing = client.get(f"{base}/failing-sources", headers=a.auth).json()["data"]
    assert [(r["source_ip"], r["dmarc_fail"]) for r in failing] == [
        ("203.0.113.9", 12),
        ("198.51.100.4", 2),
    ]
    tls = client.get(f"{base}/tls-reports", headers=a.auth).json()["data"]
    assert tls[0]["failed_sessions"] == 3 and tls[0]["begin_at"].endswith("Z")
    assert tls[0]["failure_details"][0]["result-type"] == "certificate-expired"
    ruf = client.get(f"{base}/forensic-reports", headers=a.auth).json()["data"]
    assert ruf[0]["original_subject"] == "Your invoice A"
    checks = client.get(
        f"/v1/teams/{a.team_id}/domains/{a.domain_id}/checks", headers=a.auth
    ).json()
    assert checks["domain"] == a.domain
    assert checks["history"][0]["record"] == "dkim"
    assert checks["history"][0]["current_status"] == "fail"


def test_reputation_inputs_and_sending_state(world: tuple[TestClient, Tenant, Tenant]) -> None:
    client, a, _b = world
    body = client.get(f"/v1/teams/{a.team_id}/reputation", headers=a.auth).json()
    inputs = body["inputs"]
    assert (inputs["delivered"], inputs["deferred"], inputs["bounced"]) == (4, 1, 1)
    assert inputs["complaints"] == 1 and inputs["attempts"] == 6
    assert body["score"] == 0.0  # 25% complaints
    assert body["sending"] == "active" and body["pause"] is None and body["throttle"] is None
    daily = client.get(f"/v1/teams/{a.team_id}/reputation/daily", headers=a.auth).json()
    assert daily["data"][0]["sender_domain"] == a.domain


def test_cross_team_matrix_is_404_and_leaks_nothing(
    world: tuple[TestClient, Tenant, Tenant],
) -> None:
    client, a, b = world
    for path in paths(a):
        assert client.get(path, headers=a.auth).status_code == 200, path
        # B's key on A's team, and B's own team with A's ids and domains
        own_team = path.replace(f"/v1/teams/{a.team_id}", f"/v1/teams/{b.team_id}", 1)
        names_a = any(x in own_team for x in (a.domain, a.domain_id, a.invoice_id))
        for attempt in (path, own_team) if names_a else (path,):
            answer = client.get(attempt, headers=b.auth)
            assert answer.status_code == 404, (attempt, answer.text)
            assert answer.json()["error"]["code"] == "not_found"
            for secret in (a.domain, a.domain_id, "Your invoice A"):
                assert secret not in answer.text
    for path in paths(b):  # B's own reads never show A's rows
        answer = client.get(path, headers=b.auth)
        assert answer.status_code == 200, (path, answer.text)
        assert a.domain not in answer.text and "Your invoice A" not in answer.text
        assert a.team_id not in answer.text


def test_billing_is_for_administrators_and_review_needs_a_pause(
    world: tuple[TestClient, Tenant, Tenant],
) -> None:
    client, a, _b = world
    created = client.post(
        f"/v1/teams/{a.team_id}/api-keys", json={"name": "s", "scope": "sending"}, headers=a.auth
    )
    assert created.status_code == 201, created.text
    sending = {"Authorization": f"Bearer {created.json()['key']}"}
    refused = client.get(f"/v1/teams/{a.team_id}/usage", headers=sending)
    assert refused.status_code == 403 and "cannot billing" in refused.json()["error"]["message"]
    review = client.post(
        f"/v1/teams/{a.team_id}/reputation/review", json={"note": "fixed it"}, headers=a.auth
    )
    assert review.status_code == 409 and "not paused" in review.json()["error"]["message"]
    bad = client.get(f"/v1/teams/{a.team_id}/deliverability/daily?cursor=abc", headers=a.auth)
    assert bad.status_code == 422


@pytest.mark.unit
def test_projection_uses_the_marts_price_rule() -> None:
    """The API's price constants are the dbt vars and the monthly close's."""
    import yaml

    from api.services import usage_reads
    from dagster_project.defs.billing import invoices

    variables = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())["vars"]
    assert usage_reads.FREE_RECIPIENTS == variables["billing_free_emails"] == invoices.FREE_EMAILS
    assert usage_reads.BLOCK_SIZE == variables["billing_block_size"] == invoices.BLOCK_SIZE
    assert variables["billing_block_price_micros"] == usage_reads.BLOCK_PRICE_MICROS
    assert usage_reads.charge_micros(10_001) == (1, 250_000)
    assert usage_reads.charge_micros(25_000) == (15, 3_750_000)


@pytest.mark.unit
def test_days_are_strict_and_clamped_to_the_warehouse() -> None:
    """A day is YYYY-MM-DD (never a number); any valid day is read, clamped to the days a
    ClickHouse Date holds, so no valid request becomes a warehouse error."""
    from datetime import date

    from api.errors import ApiError
    from api.services.warehouse_reads import date_range, parse_day

    assert parse_day("0001-01-01", "from") == date(1970, 1, 1)
    assert parse_day("9999-12-31", "to") == date(2149, 6, 6)
    for bad in ("0", "2024-02-30", "20240101"):
        with pytest.raises(ApiError) as refused:
            parse_day(bad, "to")
        assert refused.value.status == 422
    first, last = date_range("2026-05-02", "2026-05-01")
    assert first > last  # an empty range: no rows, not an error


def test_review_request_is_the_teams_own_administrators(
    world: tuple[TestClient, Tenant, Tenant],
) -> None:
    """B cannot ask for a review of A's pause (404, A's pause untouched); A's
    Administrator can, once; the reputation read then shows the pause and the request."""
    import orjson

    from kibamail import team_pauses
    from kibamail.redis_keys import RedisKeys

    client, a, b = world
    redis = client.app.state.km.sync_redis  # type: ignore[attr-defined]
    flag = {"event_id": "p1", "team_id": a.team_id, "paused": True, "score": 0.91,
            "reason": "bulk score 0.91", "source": "scoring"}  # fmt: skip
    redis.set(RedisKeys.team_paused(a.team_id), orjson.dumps(flag))
    try:
        path = f"/v1/teams/{a.team_id}/reputation/review"
        forged = client.post(path, json={"note": "please"}, headers=b.auth)
        assert forged.status_code == 404 and forged.json()["error"]["code"] == "not_found"
        record = team_pauses.read_pause(redis, a.team_id)
        assert record is not None and record.review is None
        asked = client.post(path, json={"note": "we removed the newsletter"}, headers=a.auth)
        assert asked.status_code == 202, asked.text
        assert asked.json()["pause"]["review_requested_at"].endswith("Z")
        again = client.post(path, json={"note": "again"}, headers=a.auth)
        assert again.status_code == 409
        state = client.get(f"/v1/teams/{a.team_id}/reputation", headers=a.auth).json()
        assert state["sending"] == "paused" and state["pause"]["reason"] == "bulk score 0.91"
        # Not in the warehouse yet (no sink here): shown from the recent view, not durable.
        assert [(h["action"], h["reason"], h["durable"]) for h in state["pause_history"]] == [
            ("review_requested", "we removed the newsletter", False)
        ]
        theirs = client.get(f"/v1/teams/{b.team_id}/reputation", headers=b.auth).json()
        assert theirs["pause"] is None and theirs["pause_history"] == []
    finally:
        redis.delete(RedisKeys.team_paused(a.team_id), RedisKeys.team_pause_audit(a.team_id))
