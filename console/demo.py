"""`kibamail demo`: the platform's main job, end to end, on the embedded stack.

POST /v1/emails (API key) -> MTA queue -> delivery to the provider-like test sink (MX
answered by the loopback DNS server; some recipients deferred or bounced) ->
smtp_messages_statuses -> Bytewax correlation -> clickhouse_smtp_messages ->
ClickHouse -> dbt `fct_message_events` materialized through Dagster. Opens go through
the pixel -> smtp_email_opens -> enrichment -> ClickHouse. The summary is read back
from ClickHouse. The same steps back the end-to-end test.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import httpx

from kibamail.settings import Settings

PROVIDERS = ["gmail.com", "outlook.com", "yahoo.com", "icloud.com", "example.org"]
FINAL_STATUSES = ("delivered", "bounced", "failed", "expired")


@dataclass
class DemoRun:
    team_id: str
    api_key: str
    domain: str
    message_ids: list[str] = field(default_factory=list)
    opened: set[str] = field(default_factory=set)
    rejected: list[str] = field(default_factory=list)


def recipients_for(count: int) -> list[str]:
    """Realistic spread over providers, with a few addresses the sink always defers/bounces."""
    out = []
    for i in range(count):
        domain = PROVIDERS[i % len(PROVIDERS)]
        if i % 97 == 13:
            out.append(f"permfail+{i}@{domain}")
        elif i % 89 == 7:
            out.append(f"tempfail+{i}@{domain}")
        else:
            out.append(f"user{i}@{domain}")
    return out


def bootstrap_team(settings: Settings) -> DemoRun:
    from api.bootstrap import create_team_with_key

    suffix = uuid.uuid4().hex[:8]
    domain = f"demo-{suffix}.kibamail.test"
    team_id, api_key = create_team_with_key(
        settings,
        email=f"demo-{suffix}@kibamail.test",
        team_name=f"Demo {suffix}",
        domain=domain,
        mark_domain_ready=True,
    )
    mark_platform_sender_ready(settings)
    return DemoRun(team_id=team_id, api_key=api_key, domain=domain)


def mark_platform_sender_ready(settings: Settings) -> None:
    """The local stack has no public DNS for the notification sender's domain: treat it as
    verified so platform mail (digests, alerts, invitations) is delivered to the test sink.
    Production verifies it like any customer domain."""
    from deliverability.domain_checks import set_ready
    from kibamail.clients import redis_client
    from kibamail.system_mail import sender_address

    redis = redis_client(settings)
    try:
        domain = sender_address(settings).rsplit("@", 1)[1]
        set_ready(redis, settings.notifications.team_id, domain, True)
    finally:
        redis.close()


RATE_LIMIT_RETRIES = 30


def _rate_limited(resp: httpx.Response) -> bool:
    """A 429 for the team's send rate (retry after the pause); not a daily cap or a pause."""
    if resp.status_code != 429:
        return False
    try:
        return bool(resp.json()["error"]["code"] == "rate_limited")
    except (ValueError, KeyError, TypeError):
        return False


async def send_emails(
    settings: Settings, run: DemoRun, recipients: list[str], concurrency: int = 16
) -> None:
    """POST /v1/emails once per recipient, as a customer's app would."""
    semaphore = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {run.api_key}"}
    async with httpx.AsyncClient(base_url=settings.api.public_url, timeout=30) as client:

        async def one(i: int, rcpt: str) -> None:
            body = {
                "from": f"Demo Shop <orders@{run.domain}>",
                "to": [rcpt],
                "subject": f"Your receipt #{1000 + i}",
                "html": f"<p>Thanks for order #{1000 + i}.</p>"
                f'<p><a href="https://shop.example.com/orders/{1000 + i}">View order</a></p>',
                "text": f"Thanks for order #{1000 + i}.",
                "tags": ["receipt", "demo"],
            }
            for _attempt in range(RATE_LIMIT_RETRIES):
                async with semaphore:
                    resp = await client.post(
                        "/v1/emails",
                        json=body,
                        headers={**headers, "Idempotency-Key": f"demo-{run.team_id}-{i}"},
                    )
                if not _rate_limited(resp):
                    break
                # As a well-behaved client: wait as told (the idempotency key makes the
                # retry safe), outside the semaphore so others may go meanwhile.
                await asyncio.sleep(min(float(resp.headers.get("Retry-After") or 1), 5.0))
            if resp.status_code in (200, 201, 202):
                run.message_ids.append(str(resp.json()["id"]))
            else:
                run.rejected.append(f"{rcpt}: {resp.status_code} {resp.text[:200]}")

        await asyncio.gather(*(one(i, rcpt) for i, rcpt in enumerate(recipients)))


async def open_some(settings: Settings, run: DemoRun, share: float = 0.3) -> None:
    """Load the open pixel for a share of messages, like mail clients showing images."""
    from api.services.rendering import OPEN_PURPOSE
    from api.services.security import Signer

    signer = Signer(settings.api.secret_key)
    chosen = run.message_ids[: int(len(run.message_ids) * share)]
    user_agents = [
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0 Safari/537.36",
        "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    ]
    async with httpx.AsyncClient(base_url=settings.api.public_url, timeout=30) as client:
        for i, message_id in enumerate(chosen):
            path = f"/t/o/{signer.dumps(OPEN_PURPOSE, [message_id, run.team_id])}"
            resp = await client.get(path, headers={"User-Agent": user_agents[i % 3]})
            if resp.status_code == 200:
                run.opened.add(message_id)


def status_counts(ch: Any, team_id: str) -> dict[str, int]:
    rows = ch.query(
        "SELECT status, uniqExact(message_id, recipient) FROM raw_message_events FINAL "
        "WHERE team_id = {team:String} GROUP BY status",
        parameters={"team": team_id},
    ).result_rows
    return {str(status): int(n) for status, n in rows}


def open_count(ch: Any, team_id: str) -> int:
    return int(
        ch.query(
            "SELECT count() FROM raw_email_opens FINAL WHERE team_id = {team:String}",
            parameters={"team": team_id},
        ).result_rows[0][0]
    )


def wait_for_warehouse(ch: Any, run: DemoRun, timeout: float = 240.0) -> dict[str, int]:
    """Until every message has an outcome past `accepted` (or deferral) and opens landed."""
    expected = len(run.message_ids)
    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        counts = status_counts(ch, run.team_id)
        outcomes = ch.query(
            "SELECT uniqExact(message_id) FROM raw_message_events FINAL "
            "WHERE team_id = {team:String} AND status != 'accepted'",
            parameters={"team": run.team_id},
        ).result_rows[0][0]
        if (
            counts.get("accepted", 0) >= expected
            and outcomes >= expected
            and open_count(ch, run.team_id) >= len(run.opened)
        ):
            return counts
        time.sleep(1.0)
    return counts


def read_usage(settings: Settings, run: DemoRun) -> dict[str, Any]:
    """This month's usage as a customer reads it: the self-service API (api.routers.usage)."""
    answer = httpx.get(
        f"{settings.api.public_url}/v1/teams/{run.team_id}/usage",
        headers={"Authorization": f"Bearer {run.api_key}"},
        timeout=30,
    )
    return dict(answer.json()) if answer.status_code == 200 else {"error": answer.text}


def mart_summary(ch: Any, team_id: str) -> list[tuple[str, int, int]]:
    return [
        (str(s), int(events), int(messages))
        for s, events, messages in ch.query(
            "SELECT status, count(), uniqExact(message_id) FROM fct_message_events "
            "WHERE team_id = {team:String} GROUP BY status ORDER BY status",
            parameters={"team": team_id},
        ).result_rows
    ]


@contextmanager
def output_to_log(log_path: Path) -> Iterator[None]:
    """Send Dagster's and dbt's step-by-step console output to a log file (fd level, so
    dbt's subprocess output too); the demo prints its own summary."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_demo(settings: Settings, *, messages: int = 1000, keep_running: bool = False) -> int:
    from dagster_project.jobs import (
        billing_table,
        close_billing,
        materialize_warehouse,
        top_reputation,
    )
    from kibamail.clients import clickhouse_client
    from local_stack.stack import Stack, StackError
    from local_stack.up import STOP_ORDER, TestnetOptions, local_profile, start_stack

    settings = local_profile(settings)
    previous = Stack(settings.stack.state_dir)
    already = {n for n in previous.names() if previous.running_pid(n)}
    started = time.monotonic()
    click.echo(
        "Starting the embedded stack (Redis, Kafka/Tansu, chDB gateway, test internet, "
        "API, MTA, pipelines)..."
    )
    try:
        stack = start_stack(
            settings,
            apps=["api", "mta", "pipelines"],
            testnet=TestnetOptions(defer_share=0.04, bounce_share=0.02),
        )
    except StackError as exc:
        click.echo(f"demo: could not start the stack: {exc}", err=True)
        return 1
    try:
        run = bootstrap_team(settings)
        click.echo(f"Team {run.team_id}, domain {run.domain}: sending {messages} emails...")
        asyncio.run(send_emails(settings, run, recipients_for(messages)))
        asyncio.run(open_some(settings, run))
        ch = clickhouse_client(settings)
        counts = wait_for_warehouse(ch, run)
        click.echo("Materializing dbt assets and closing this month's billing through Dagster...")
        with output_to_log(settings.stack.state_dir / "logs" / "demo-dagster.log"):
            result = materialize_warehouse(settings)
            billing = close_billing(settings)
        summary = mart_summary(ch, run.team_id)
        opens = open_count(ch, run.team_id)
        invoices = [row for row in billing_table(settings) if row["team_id"] == run.team_id]
        reputation = top_reputation(settings, limit=5)
        usage = read_usage(settings, run)
    finally:
        if not keep_running:
            for name in STOP_ORDER:
                if name not in already:
                    stack.stop(name)
    click.echo("")
    click.echo(
        f"Kibamail demo: {len(run.message_ids)} accepted by POST /v1/emails, "
        f"{len(run.rejected)} refused, in {time.monotonic() - started:.1f} s"
    )
    click.echo("Raw events in ClickHouse (distinct message x recipient per status):")
    for status in sorted(counts):
        click.echo(f"  {status:10s} {counts[status]:6d}")
    click.echo(f"Opens recorded: {opens} (pixel loaded for {len(run.opened)} messages)")
    click.echo("dbt mart fct_message_events (status, events, messages):")
    for status, events, msgs in summary:
        click.echo(f"  {status:10s} {events:6d} {msgs:6d}")
    click.echo("Billing (fct_billing_monthly, this team):")
    for row in invoices:
        click.echo(
            f"  {row['month']}  {row['accepted_recipients']:>8} recipients  "
            f"{row['billable_blocks']:>4} billable blocks  ${Decimal(str(row['amount_usd'])):.2f}"
        )
    click.echo(
        f"Usage read back through GET /v1/teams/{run.team_id}/usage: {usage.get('month')} "
        f"{usage.get('recipients')} recipients, {usage.get('free_remaining')} free left, "
        f"charge ${usage.get('charge')}, projected ${usage.get('projected_charge')} "
        f"for {usage.get('projected_recipients')} recipients"
    )
    click.echo("Reputation, lowest scores of the latest day (fct_reputation_daily):")
    for row in reputation:
        click.echo(
            f"  {row['day']} {row['sender_domain'] or '-':32s} ip {row['source_ip'] or '-':15s} "
            f"attempts {row['attempts']:>5}  bounce {row['bounce_rate']:.4f}  "
            f"score {row['reputation_score']}"
        )
    click.echo(
        f"Dagster: materialization {'ok' if result.get('success') else 'FAILED'}, "
        f"billing close {'ok' if billing.get('success') else 'FAILED'}"
    )
    ok = (
        bool(result.get("success"))
        and bool(billing.get("success"))
        and counts.get("accepted", 0) == len(run.message_ids) == messages
        and opens >= len(run.opened)
        and usage.get("recipients") == len(run.message_ids)
    )
    return 0 if ok else 1
