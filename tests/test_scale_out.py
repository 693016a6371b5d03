"""Scale-out on one machine: 3 MTAs and 2 APIs behind a real HAProxy, a 2-process Bytewax
cluster, one Redis queue; SIGKILL one of each role mid-run and restart it.

Load goes through HAProxy both ways (POST /v1/emails, SMTP submission with PROXY v2 to the
MTAs) into the provider-like sink, whose replies reach the MTAs 0.2 s late (ReplyDelay) so
the killed MTA dies with deliveries in flight. Exactly once toward the receiver is the shipped
``in_doubt = "assume_delivered"`` (mta/outcomes.py) with a sink that accepts everything at
once: a receiver that, like Postfix, keeps a message whose final dot it has read even when
the client vanishes before the 250. (The test sink's slow answers do not: aiosmtpd cancels
the session on EOF, so a message waiting for a slow 250 when its MTA dies is dropped.)
At the end: every acknowledged message (2xx, 250) reached the sink exactly once, counted by
platform message id; the only other deliveries are SMTP messages whose connection the kill
cut; every status event (accepted + delivered per message) is exactly one ClickHouse row by
event_id; and every failed attempt was on the killed process, in flight when it died.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from threading import Thread
from typing import Any

import pytest

from kibamail.contracts import MessageStatus
from kibamail.redis_keys import RedisKeys
from kibamail.settings import DatabaseSettings, SendingLimits, Settings
from local_stack import up
from local_stack.services import kafka_spec, redis_spec
from local_stack.stack import free_port
from testing.fixtures import build_test_settings
from testing.scale_out import ReplyDelay, ScaleOut, policy_file
from testing.scale_out_load import Attempt, Load
from testing.testnet import read_records

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(420)]

API_MESSAGES = 800
SMTP_MESSAGES = 600
RATE = 40.0  # attempts started per second, both paths together
CLAIM_IDLE_SECONDS = 10
REPLY_DELAY = 0.2  # seconds: every sink reply, so each MTA has deliveries in flight


@dataclass
class Kill:
    name: str
    before: float
    after: float
    done_at_kill: int
    held: int = 0  # queue entries the killed MTA had read and not yet acknowledged


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


@pytest.fixture
def platform(
    tmp_path: Path, isolated_warehouse: Settings, mariadb_url: str
) -> Iterator[tuple[ScaleOut, Settings]]:
    import sqlalchemy

    server = mariadb_url.split("/kibamail_test")[0]
    root = sqlalchemy.create_engine(server + "/")
    with root.begin() as conn:
        conn.exec_driver_sql("DROP DATABASE IF EXISTS kibamail_scale_out")
        conn.exec_driver_sql("CREATE DATABASE kibamail_scale_out CHARACTER SET utf8mb4")
    root.dispose()

    base = build_test_settings(tmp_path / "base")
    api_port = free_port()
    tuning = base.pipelines.tuning.model_copy(
        # Bulk scoring is test_bulk_scoring_e2e's subject: here one team's burst must not
        # pause it half-way (that would refuse sends for a reason unrelated to the kills).
        update={"scoring_min_messages": 1_000_000}
    )
    settings = base.model_copy(
        update={
            "clickhouse": isolated_warehouse.clickhouse,
            "redis": base.redis.model_copy(update={"durability": "aof_always"}),
            "kafka": base.kafka.model_copy(update={"topic_partitions": 2}),
            "database": DatabaseSettings(url=f"{server}/kibamail_scale_out?charset=utf8mb4"),
            "sending": SendingLimits(per_second=1000, burst=2000),
            "api": base.api.model_copy(update={"public_url": f"http://127.0.0.1:{api_port}"}),
            "mta": base.mta.model_copy(
                update={
                    "policy_file": policy_file(
                        tmp_path / "policies.toml",
                        claim_idle_seconds=CLAIM_IDLE_SECONDS,
                        per_second=1000,
                        burst=2000,
                    )
                }
            ),
            "pipelines": base.pipelines.model_copy(update={"tuning": tuning}),
        }
    )
    # The MTAs reach the sink through a relay that answers REPLY_DELAY late (a distant MX).
    relay = ReplyDelay(base.mta.delivery_port, REPLY_DELAY).start()
    to_sink = settings
    settings = settings.model_copy(
        update={"mta": settings.mta.model_copy(update={"delivery_port": relay.port})}
    )
    scale = ScaleOut(settings, tmp_path / "scale", api_port=api_port)
    try:
        from api.db import migrate
        from kibamail.clients import ensure_topics

        migrate(settings.database.url)  # once, as the release's migrate Job does
        scale.stack.start(redis_spec(settings, durable=True))  # AOF always, as shipped
        scale.stack.start(kafka_spec(settings))
        ensure_topics(settings)
        options = up.TestnetOptions(0.0, 0.0, record_file=str(tmp_path / "sink"))
        sink = up.testnet_spec(to_sink, options)
        scale.start(extra=[sink])
        yield scale, settings
    finally:
        scale.stop()
        relay.stop()


def bootstrap(settings: Settings) -> tuple[str, str, str, tuple[str, str]]:
    from api.bootstrap import create_team_with_key
    from kibamail.clients import redis_client
    from mta.credentials import create_smtp_credential

    domain = "scale.shop.example"
    team_id, api_key = create_team_with_key(
        settings, email="ops@scale.shop.example", team_name="Scale", domain=domain
    )
    client = redis_client(settings)
    try:
        login = create_smtp_credential(client, team_id)
    finally:
        client.close()
    return team_id, api_key, domain, login


def kill_and_restart(
    scale: ScaleOut, load: Load, name: str, at: int, redis: Any, restarts: list[Thread]
) -> Kill:
    """Once ``at`` attempts are done: SIGKILL ``name``'s process group, then restart it on
    a thread (the load and the next kill go on meanwhile)."""
    assert wait_until(lambda: load.done() >= at, timeout=120, interval=0.1)
    pid = scale.pid(name)
    before = time.monotonic()
    scale.kill(name)
    after = time.monotonic()
    done = load.done()
    held = 0
    if name.startswith("mta"):  # the entries it held are now waiting to be reclaimed
        held = sum(
            c["pending"]
            for stream in RedisKeys.submission_streams()
            for c in redis.xinfo_consumers(stream, RedisKeys.SUBMISSION_GROUP)
            if f"-{pid}-" in c["name"].decode()
        )
        print(f"{name} (pid {pid}) killed after {done} attempts, holding {held} queue entries")
    restart = Thread(target=scale.restart, args=(name,), name=f"restart-{name}")
    restart.start()
    restarts.append(restart)
    return Kill(name, before, after, done, held)


def cut_smtp(failure: Attempt, kill: Kill, host: str) -> bool:
    """An SMTP failure the MTA kill explains: on a session to that MTA opened before it died."""
    return failure.backend == host and failure.connection_opened < kill.after


def cut_api(failure: Attempt, kill: Kill, server: str) -> bool:
    """An API failure the kill explains: in flight on that process when it died."""
    return (
        failure.backend in (server, "")
        and failure.started < kill.after
        and failure.ended > kill.before
    )


def test_three_mtas_two_apis_two_pipelines_survive_a_kill_each(
    platform: tuple[ScaleOut, Settings],
) -> None:
    import redis as redis_lib

    from kibamail.clients import clickhouse_client
    from mta.events import status_event_id

    scale, settings = platform
    team_id, api_key, domain, login = bootstrap(settings)
    redis = redis_lib.Redis.from_url(settings.redis.url)
    total = API_MESSAGES + SMTP_MESSAGES
    load = Load(
        scale.api_url, api_key, scale.submission_port, login, domain,
        API_MESSAGES, SMTP_MESSAGES, RATE,
    )  # fmt: skip
    load.start()
    restarts: list[Thread] = []
    kills = [
        kill_and_restart(scale, load, "mta1", total // 5, redis, restarts),
        kill_and_restart(scale, load, "api1", 2 * total // 5, redis, restarts),
        kill_and_restart(scale, load, "pipelines1", 3 * total // 5, redis, restarts),
    ]
    assert load.join(timeout=180), "the load did not finish"
    for restart in restarts:
        restart.join(120)
    for kill in kills:
        assert 0 < kill.done_at_kill < total, f"{kill.name} was not killed mid-run"
    assert kills[0].held > 0, "the MTA died with no delivery in flight: nothing was tested"
    for name in scale.roles:
        assert scale.pid(name) is not None, f"{name} died:\n{scale.log_tail(name)}"

    attempts = load.snapshot()
    assert len(attempts) == total
    mta_kill, api_kill = kills[0], kills[1]
    smtp_failed = [a for a in attempts if a.path == "smtp" and not a.ok]
    api_failed = [a for a in attempts if a.path == "api" and not a.ok]
    # Only the killed processes' connections failed, at most one message per SMTP session
    # (the client then opens a new one through HAProxy) and per API client in flight.
    mta_host = scale.roles["mta1"].settings.mta.hostname
    assert [a for a in smtp_failed if not cut_smtp(a, mta_kill, mta_host)] == []
    assert len(smtp_failed) <= load.smtp_sessions
    assert len({a.connection_opened for a in smtp_failed}) == len(smtp_failed)
    assert [a for a in api_failed if not cut_api(a, api_kill, "api1")] == []
    assert len(api_failed) <= load.api_clients
    # The API client resends what was cut, with its idempotency key: all accepted now, and
    # a request the dead process had already queued comes back with the same message id.
    retried = asyncio.run(load.retry_api([a.index for a in api_failed]))
    assert [a.error for a in retried if not a.ok] == []

    acked = {a.message_id for a in [*attempts, *retried] if a.ok}
    assert len(acked) == total - len(smtp_failed)
    sink_file = scale.state_dir.parent / "sink"

    def delivered() -> Counter[str]:
        return Counter(r.message_id for r in read_records(sink_file) if r.answer_code == 250)

    def settled() -> bool:
        queue = sum(redis.xlen(key) for key in RedisKeys.submission_streams()) + sum(
            redis.zcard(key) for key in RedisKeys.retry_schedules()
        )
        return queue == 0 and acked <= delivered().keys()

    if not wait_until(settled, timeout=120):
        missing = acked - delivered().keys()
        late = [a for a in [*attempts, *retried] if a.message_id in missing]
        pytest.fail(f"{len(missing)} acknowledged, not delivered: {late}; kills {kills}")
    time.sleep(3)  # a duplicate would arrive now
    counts = delivered()
    assert {mid: n for mid, n in counts.items() if n != 1} == {}, "delivered more than once"
    assert acked <= counts.keys()
    unacked = counts.keys() - acked  # queued, but the 250 died with the MTA's connection
    assert len(unacked) <= len(smtp_failed)
    assert [r for r in read_records(sink_file) if r.answer_code != 250] == []

    rcpt = {r.message_id: r.rcpt for r in read_records(sink_file)}
    expected = {
        status_event_id(mid, rcpt[mid], status, 0)
        for mid in counts
        for status in (MessageStatus.ACCEPTED, MessageStatus.DELIVERED)
    }
    ch = clickhouse_client(settings)

    def rows() -> dict[str, int]:
        result = ch.query(
            "SELECT event_id, count() FROM raw_message_events FINAL "
            "WHERE team_id = {t:String} GROUP BY event_id",
            parameters={"t": team_id},
        )
        return {str(event_id): int(n) for event_id, n in result.result_rows}

    assert wait_until(lambda: expected <= rows().keys(), timeout=150, interval=1), (
        f"{len(expected - rows().keys())} status events missing in ClickHouse"
    )
    final = rows()
    assert set(final) == expected
    assert {e: n for e, n in final.items() if n != 1} == {}
    raw = ch.query(
        "SELECT count() FROM raw_message_events WHERE team_id = {t:String}",
        parameters={"t": team_id},
    ).result_rows[0][0]
    print(
        f"scale-out: {total} attempts, {len(acked)} acknowledged, {len(counts)} delivered once "
        f"({len(unacked)} of them unacknowledged), smtp cut {len(smtp_failed)}, api cut "
        f"{len(api_failed)} (resent), SMTP connect retries {len(load.connect_errors)}, "
        f"{len(final)} events = rows (FINAL), {raw} rows before merge"
    )
    redis.close()


def test_each_pipelines_flow_gets_a_cluster_port() -> None:
    from pipelines.run import flow_builders
    from testing.scale_out import FLOWS

    assert len(flow_builders()) == FLOWS
