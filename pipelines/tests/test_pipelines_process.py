"""`kibamail pipelines` as a real process against the real broker, Redis and chDB gateway.

Statuses and opens go in through Kafka with their mappings in Redis, and come out as
correlated, enriched, deduplicated rows in ClickHouse; bad input lands on the
dead-letter topic with its reason; /metrics answers with throughput and dead letters.
"""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
import pytest

from kibamail.contracts import EmailOpenEvent, MessageMapping, MessageStatus, Topic, serialize
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from local_stack.services import kibamail_spec
from local_stack.stack import Stack
from pipelines.tests.conftest import wait_until
from pipelines.tests.fakes import T0, status_event
from pipelines.tests.test_sink_integration import read_dead_letters

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pipelines_process(
    test_settings: Settings,
    test_stack: Stack,
    kafka_service: str,
    redis_service: str,
    warehouse_service: Any,
) -> Iterator[Settings]:
    env_settings = test_settings.model_copy(deep=True)
    env_settings.pipelines.tuning.mapping_retry_delays_seconds = [0.2, 0.5]
    spec = kibamail_spec(
        env_settings, "pipelines", ["pipelines"], test_settings.pipelines.metrics_port, "/metrics"
    )
    test_stack.start(spec)
    yield test_settings
    test_stack.stop("pipelines")


def count(ch: Any, table: str, team: str, where: str = "1") -> int:
    return int(
        ch.query(
            f"SELECT count() FROM {table} FINAL WHERE team_id = {{t:String}} AND {where}",
            parameters={"t": team},
        ).result_rows[0][0]
    )


def test_statuses_and_opens_reach_clickhouse(
    pipelines_process: Settings, produce: Any, redis_client: Any, warehouse_client: Any
) -> None:
    team = f"team-{uuid.uuid4().hex[:8]}"
    ids = [f"{team}-{i}@kibamail.test" for i in range(200)]
    for i, message_id in enumerate(ids):
        mapping = MessageMapping(team_id=team, broadcast_id="b1", contact_id=f"c{i}", tags=["t"])
        redis_client.set(RedisKeys.message_mapping(team, message_id), serialize(mapping))
    statuses = []
    for mid in ids:
        # Out of order on purpose: delivered is produced before accepted.
        statuses.append(status_event(mid, MessageStatus.DELIVERED, team, seconds=5))
        statuses.append(status_event(mid, MessageStatus.ACCEPTED, team, seconds=0))
    payloads = [serialize(e) for e in statuses]
    marker = uuid.uuid4().hex
    bad = [b"{broken " + marker.encode(), f'{{"event_version": 2, "x": "{marker}"}}'.encode()]
    produce(Topic.MESSAGE_STATUSES.value, payloads + payloads[:50] + bad)  # 50 duplicates
    opens = [
        serialize(EmailOpenEvent(team_id=team, message_id=mid, occurred_at=T0 + timedelta(1)))
        for mid in ids[:20]
    ]
    produce(Topic.EMAIL_OPENS.value, opens)

    assert wait_until(lambda: count(warehouse_client, "raw_message_events", team) >= 400, 90)
    assert wait_until(lambda: count(warehouse_client, "raw_email_opens", team) >= 20, 60)
    assert count(warehouse_client, "raw_message_events", team) == 400
    assert count(warehouse_client, "raw_message_events", team, "contact_id != ''") == 400
    final = warehouse_client.query(
        "SELECT argMax(status, occurred_at) AS s, count() FROM "
        "(SELECT message_id, status, occurred_at FROM raw_message_events FINAL "
        "WHERE team_id = {t:String}) GROUP BY message_id ORDER BY s",
        parameters={"t": team},
    ).result_rows
    assert {row[0] for row in final} == {"delivered"} and len(final) == 200
    assert (
        count(warehouse_client, "raw_email_opens", team, "is_first AND broadcast_id = 'b1'") == 20
    )

    letters = read_dead_letters(pipelines_process, marker)
    assert sorted(letter["reason"].split(":")[0] for letter in letters) == [
        "malformed JSON",
        "unsupported event_version 2",
    ]
    metrics = (
        urllib.request.urlopen(
            f"http://127.0.0.1:{pipelines_process.pipelines.metrics_port}/metrics", timeout=5
        )
        .read()
        .decode()
    )
    assert 'kibamail_pipeline_events_in_total{flow="correlation"}' in metrics
    assert "kibamail_pipeline_dead_letters_total" in metrics
    assert "kibamail_sink_rows_total" in metrics
    assert "kibamail_pipeline_consumer_lag" in metrics


def test_status_whose_mapping_never_comes_is_dead_lettered(
    pipelines_process: Settings, produce: Any, warehouse_client: Any
) -> None:
    team = f"team-{uuid.uuid4().hex[:8]}"
    produce(
        Topic.MESSAGE_STATUSES.value,
        [serialize(status_event(f"{team}-ghost", MessageStatus.DELIVERED, team))],
    )
    assert wait_until(lambda: bool(read_dead_letters(pipelines_process, f"{team}-ghost")), 30, 1.0)
    [letter] = read_dead_letters(pipelines_process, f"{team}-ghost")
    assert letter["reason"].startswith("mapping missing: no message mapping")
    assert count(warehouse_client, "raw_message_events", team) == 0


def test_newsletter_features_pause_the_team(
    pipelines_process: Settings, produce: Any, redis_client: Any, warehouse_client: Any
) -> None:
    import random

    from mta.features import submission_features
    from pipelines.tests.traffic import newsletter

    team = f"team-{uuid.uuid4().hex[:8]}"
    rng = random.Random(7)
    payloads = []
    for i in range(80):
        data, to = newsletter(rng)
        payloads.append(serialize(submission_features(team, f"{team}-{i}", [to], data)))
    produce(Topic.SUBMISSION_FEATURES.value, payloads)
    assert wait_until(lambda: redis_client.exists(RedisKeys.team_paused(team)) == 1, 60)
    flag = orjson.loads(redis_client.get(RedisKeys.team_paused(team)))
    assert flag["paused"] and flag["source"] == "scoring"
    assert wait_until(lambda: count(warehouse_client, "raw_team_pauses", team) == 1, 60)
