"""One email end to end on real components, the way `make demo` runs 1,000.

POST /v1/emails -> Redis queue -> MTA -> provider-like sink (MX from the loopback DNS)
-> smtp_messages_statuses -> Bytewax correlation -> clickhouse_smtp_messages ->
ClickHouse -> dbt fct_message_events via Dagster; the open pixel via smtp_email_opens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from console import demo
from kibamail.settings import Settings
from local_stack import up
from local_stack.stack import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def running_platform(
    test_settings: Settings,
    test_stack: Stack,
    kafka_service: str,
    redis_service: str,
    warehouse_service: object,
) -> Iterator[Settings]:
    test_stack.start(
        up.testnet_spec(test_settings, up.TestnetOptions(defer_share=0.0, bounce_share=0.0))
    )
    specs = up.app_specs(test_settings)
    for name in ("api", "api-outbox", "mta", "pipelines"):
        test_stack.start(specs[name])
    yield test_settings
    for name in ("pipelines", "mta", "api", "api-outbox", "testnet"):
        test_stack.stop(name)


def test_emails_flow_from_api_to_the_dbt_mart(running_platform: Settings) -> None:
    from dagster_project.jobs import materialize_warehouse
    from kibamail.clients import clickhouse_client

    settings = running_platform
    run = demo.bootstrap_team(settings)
    recipients = [f"user{i}@gmail.com" for i in range(8)] + ["permfail@outlook.com"]
    asyncio.run(demo.send_emails(settings, run, recipients))
    assert run.rejected == []
    assert len(run.message_ids) == len(recipients)
    asyncio.run(demo.open_some(settings, run, share=0.5))
    assert run.opened

    ch = clickhouse_client(settings)
    counts = demo.wait_for_warehouse(ch, run, timeout=120)
    assert counts.get("accepted") == len(recipients)
    assert counts.get("delivered") == 8
    assert counts.get("bounced") == 1
    assert demo.open_count(ch, run.team_id) == len(run.opened)

    # Correlation added the team's mapping to every row.
    uncorrelated = ch.query(
        "SELECT count() FROM raw_message_events FINAL WHERE team_id = {t:String} "
        "AND has(tags, 'receipt') = 0",
        parameters={"t": run.team_id},
    ).result_rows[0][0]
    assert uncorrelated == 0

    result = materialize_warehouse(settings)
    assert result["success"], result
    summary = {status: messages for status, _, messages in demo.mart_summary(ch, run.team_id)}
    assert summary == {"accepted": 9, "delivered": 8, "bounced": 1}
