"""The MTA's delivery side on a real 3-master Redis Cluster (issue 16 item 5).

SMTP submissions of two teams (chosen so that, with the API's team, the three teams' slot
groups sit on the three masters) and POST /v1/emails of a third team go through the real
`kibamail api` and `kibamail mta` processes (a listener process, then a delivery-only
one), pointed at the cluster (``RedisSettings(cluster=True)``), to a provider-like sink
that defers the ``tempfail@`` recipients at RCPT (retried through the per-group retry
schedules until they expire) and bounces the ``permfail@`` ones. No 4xx/5xx comes after
DATA: a worker killed between its final dot and the answer counts the message delivered
(the shipped ``in_doubt = "assume_delivered"``), which a DATA-stage refusal would belie.
Everything is queued before delivery starts; the delivery process is SIGKILLed with
entries in flight and restarted: its pending entries are reclaimed per group. At the end
every message reached its final state, every accepted message was delivered exactly once
(counted at the sink by platform id), each status event is one event id in Kafka
(accepted + final per recipient; a republish repeats an id, never invents one), the keys
of each team live on the master of its group's slot, the keys spread over all 3 masters,
and no master counted a CROSSSLOT error nor any log a cross-slot refusal of the client.
A late DSN to a delivered message's signed return path suppresses the address in its
team's group; the same return path reporting another team's recipient is refused.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_lib
from redis.crc import key_slot

from kibamail.redis_keys import SLOT_GROUPS, RedisKeys, group_tag, slot_group
from kibamail.settings import DatabaseSettings, Settings
from local_stack import up
from local_stack.services import kibamail_spec
from local_stack.stack import Stack, free_port, tcp_open
from mta.credentials import create_smtp_credential
from mta.tests.helpers import (
    StatusReader,
    duplicate_story,
    status_offsets,
    wait_until,
    with_policy,
    write_policy,
)
from mta.tests.test_forged_reports import dsn
from testing.redis_cluster import RedisClusterHandle
from testing.testnet import DnsServer, SinkConfig, SinkServer, Zone

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

SMTP_PER_TEAM = 300
API_MESSAGES = 200
BOUNCES_PER_TEAM = 3  # permfail@ recipients: a 5xx at RCPT, one "bounced" final event
DEFERS_PER_TEAM = 2  # tempfail@ recipients: 4xx at RCPT, retried, "expired" after MAX_AGE
MAX_AGE = 20.0  # seconds after submission a deferred message is still retried
FINAL = {"delivered", "bounced", "failed", "expired"}
CROSS_SLOT = ("crossslot", "cross slot", "same slot", "crossslottransaction")


@dataclass
class Cluster:
    settings: Settings
    stack: Stack
    handle: RedisClusterHandle
    sink: SinkServer
    delivery: Any  # the delivery-only MTA's ServiceSpec, started by the test


def group_master(handle: RedisClusterHandle, group: int) -> int:
    return handle.master_of_slot(key_slot(group_tag(group)[1:-1].encode()))


def teams_on_other_masters(handle: RedisClusterHandle, taken: int) -> list[str]:
    """Two SMTP team ids whose groups sit on the two masters other than ``taken``."""
    found: dict[int, str] = {}
    for n in range(1000):
        team = f"cluster-smtp-{n}"
        master = group_master(handle, slot_group(team))
        if master != taken and master not in found:
            found[master] = team
        if len(found) == 2:
            return list(found.values())
    raise AssertionError("no team ids on the other masters")


@pytest.fixture
def cluster(
    test_settings: Settings,
    kafka_service: str,
    redis_cluster: RedisClusterHandle,
    tmp_path: Path,
) -> Iterator[Cluster]:
    from api.db import migrate

    redis_cluster.flush()
    api_port = free_port()
    base = with_policy(test_settings, write_policy(tmp_path / "policies.toml", max_age=MAX_AGE))
    settings = base.model_copy(
        update={
            "redis": redis_cluster.settings,
            "database": DatabaseSettings(url=f"sqlite:///{tmp_path / 'kibamail.db'}"),
            "api": base.api.model_copy(
                update={"port": api_port, "public_url": f"http://127.0.0.1:{api_port}"}
            ),
            "mta": base.mta.model_copy(
                update={
                    "submission_port": free_port(),
                    "smtps_port": free_port(),
                    "inbound_port": free_port(),
                    "metrics_port": free_port(),
                }
            ),
        }
    )
    migrate(settings.database.url)
    sink = SinkServer(
        port=settings.mta.delivery_port,
        config=SinkConfig(seed=11, keep_messages=False),
    ).start()
    dns = DnsServer(port=settings.mta.dns_port, zone=Zone()).start()
    stack = Stack(tmp_path / "stack")
    listener = kibamail_spec(
        settings, "mta", ["mta", "--no-delivery"], health_port=settings.mta.metrics_port
    )
    worker = settings.model_copy(
        update={"mta": settings.mta.model_copy(update={"metrics_port": free_port()})}
    )
    delivery = kibamail_spec(
        worker, "mta-delivery", ["mta", "--no-listeners"], health_port=worker.mta.metrics_port
    )
    try:
        stack.start(up.app_specs(settings)["api"])
        stack.start(listener)
        yield Cluster(settings, stack, redis_cluster, sink, delivery)
    finally:
        stack.stop_all(order=["mta-delivery", "mta", "api"])
        dns.stop()
        sink.stop()


def recipient_local(i: int, count: int, otherwise: str) -> str:
    """Bounces first; the deferred ones last (submitted last: retried longest)."""
    if i < BOUNCES_PER_TEAM:
        return "permfail"
    if i >= count - DEFERS_PER_TEAM:
        return "tempfail"
    return otherwise


def smtp_send(settings: Settings, login: tuple[str, str], team: str, count: int) -> list[str]:
    """``count`` messages over one authenticated submission session; the platform ids."""
    ids = []
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", settings.mta.submission_port, timeout=60) as client:
        client.starttls(context=context)
        client.login(*login)
        for i in range(count):
            local = recipient_local(i, count, f"user{i}")
            rcpt = f"{local}@m{i}.{team}.example.org"  # distinct: a bounce suppresses
            body = (
                f"From: news@{team}.example\r\nTo: {rcpt}\r\nSubject: cluster {i}\r\n"
                f"Date: Mon, 07 Dec 2026 01:00:00 +0000\r\n\r\nHello {i}.\r\n"
            )
            code, text = client.mail(f"news@{team}.example")
            assert code == 250, text
            assert client.rcpt(rcpt)[0] == 250
            code, text = client.data(body.encode())
            assert code == 250, text
            ids.append(text.decode().rsplit(" ", 1)[-1])
    return ids


async def api_send(settings: Settings, api_key: str, domain: str, count: int) -> list[str]:
    headers = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(base_url=settings.api.public_url, timeout=60) as client:

        async def one(i: int) -> str:
            local = recipient_local(i, count, f"api{i}")
            body = {
                "from": f"Shop <orders@{domain}>",
                "to": [f"{local}@m{i}.api.example.org"],
                "subject": f"receipt {i}",
                "text": f"Thanks for order {i}.",
            }
            resp = await client.post(
                "/v1/emails", json=body, headers={**headers, "Idempotency-Key": f"c-{i}"}
            )
            assert resp.status_code in (200, 202), resp.text
            return str(resp.json()["id"])

        return list(await asyncio.gather(*(one(i) for i in range(count))))


def send_report(settings: Settings, rcpt: str, data: bytes) -> tuple[int, bytes]:
    """Mail a report to port 25 (the listener process) for ``rcpt``."""
    with smtplib.SMTP("127.0.0.1", settings.mta.inbound_port, timeout=30) as client:
        client.ehlo()
        client.mail("")
        code, text = client.rcpt(rcpt)
        if code != 250:
            return code, text
        return client.data(data)


def cross_slot_errors(handle: RedisClusterHandle) -> dict[int, str]:
    """Each master's CROSSSLOT error counter line (absent when it never refused one)."""
    found = {}
    for port in handle.ports:
        with redis_lib.Redis(port=port) as node:
            for name, value in node.info("errorstats").items():
                if "CROSSSLOT" in name.upper():
                    found[port] = f"{name}={value}"
    return found


def test_delivery_on_a_three_master_cluster_survives_a_kill(cluster: Cluster) -> None:
    from api.bootstrap import create_team_with_key
    from kibamail.clients import redis_client

    settings, handle, sink = cluster.settings, cluster.handle, cluster.sink
    suffix = uuid.uuid4().hex[:6]
    api_domain = f"shop-{suffix}.example"
    api_team, api_key = create_team_with_key(
        settings, email=f"ops@{api_domain}", team_name="Cluster", domain=api_domain
    )
    smtp_teams = teams_on_other_masters(handle, group_master(handle, slot_group(api_team)))
    teams = [api_team, *smtp_teams]
    assert {group_master(handle, slot_group(t)) for t in teams} == set(handle.ports)
    client = redis_client(settings)
    logins = {}
    for team in smtp_teams:
        client.set(RedisKeys.domain_ready(team, f"{team}.example"), "1")
        logins[team] = create_smtp_credential(client, team)
    start_offsets = status_offsets(settings)
    assert wait_until(lambda: tcp_open(settings.mta.submission_port), 30)

    smtp_ids = {team: smtp_send(settings, logins[team], team, SMTP_PER_TEAM) for team in smtp_teams}
    api_ids = asyncio.run(api_send(settings, api_key, api_domain, API_MESSAGES))
    expected = {mid: team for team, ids in smtp_ids.items() for mid in ids}
    expected |= dict.fromkeys(api_ids, api_team)
    total = len(expected)
    assert total == 2 * SMTP_PER_TEAM + API_MESSAGES
    to_deliver = total - 3 * (BOUNCES_PER_TEAM + DEFERS_PER_TEAM)

    # Everything is queued, in the three teams' group streams (one per master).
    queued = {g: client.xlen(RedisKeys.submission_stream(g)) for g in range(SLOT_GROUPS)}
    assert sum(queued.values()) == total
    assert {group_master(handle, g) for g, n in queued.items() if n} == set(handle.ports)

    # Deliver; kill the delivery process with entries in flight, restart it: the new
    # process reclaims the dead one's pending entries group by group.
    cluster.stack.start(cluster.delivery)
    pid = cluster.stack.running_pid("mta-delivery")
    assert wait_until(lambda: sink.delivered_messages() >= to_deliver // 4, 120, 0.02)
    cluster.stack.kill("mta-delivery")
    killed_at = time.time()
    at_kill = sink.delivered_messages()
    held = sum(
        c["pending"]
        for stream in RedisKeys.submission_streams()
        for c in client.xinfo_consumers(stream, RedisKeys.SUBMISSION_GROUP)
        if f"-{pid}-" in c["name"].decode()
    )
    assert at_kill < to_deliver, "the run finished before the kill; nothing was tested"
    assert held > 0, "the MTA died with no entry in flight: nothing was tested"
    cluster.stack.start(cluster.delivery)

    assert wait_until(lambda: sink.delivered_messages() >= to_deliver, 240, 0.5), (
        f"{sink.delivered_messages()} of {to_deliver} delivered"
    )
    time.sleep(3)  # a duplicate would arrive now
    counts = sink.delivered_counts()
    duplicates = {m for m, n in counts.items() if n != 1}
    assert not duplicates, "delivered more than once: " + duplicate_story(
        sink.records, duplicates, killed_at, [cluster.stack.log_file("mta-delivery")]
    )
    assert set(counts) <= set(expected)
    assert len(counts) == to_deliver
    deferred_at_sink = [r for r in sink.records if 400 <= r.answer_code < 500]
    assert deferred_at_sink, "the sink deferred nothing: retries were not exercised"

    reader = StatusReader(settings, start_offsets=start_offsets, message_ids=set(expected))
    try:

        def all_final(events: list[Any]) -> bool:
            return len({e.message_id for e in events if e.status.value in FINAL}) >= total

        events = reader.poll_until(all_final, timeout=180)
    finally:
        reader.close()
    finals = {e.message_id: e.status.value for e in events if e.status.value in FINAL}
    assert set(finals) == set(expected)
    assert Counter(finals.values()) == {
        "delivered": to_deliver,
        "bounced": 3 * BOUNCES_PER_TEAM,
        "expired": 3 * DEFERS_PER_TEAM,
    }
    assert {e.team_id for e in events} == set(teams)
    assert all(e.team_id == expected[e.message_id] for e in events)
    # One event id per (message, status, attempt): a republish repeats an id, and each
    # message has exactly one accepted and one final event id.
    ids_by_message: dict[str, set[tuple[str, str]]] = {}
    for e in events:
        ids_by_message.setdefault(e.message_id, set()).add((e.status.value, e.event_id))
    for mid, seen in ids_by_message.items():
        statuses = Counter(status for status, _id in seen)
        assert statuses["accepted"] == 1 and sum(statuses[s] for s in FINAL) == 1, (mid, seen)
    retried = {e.message_id for e in events if e.status.value == "deferred" and e.attempt >= 1}
    assert len(retried) == 3 * DEFERS_PER_TEAM  # deferred again after a retry: moved back

    # Settled: every group's stream, retry schedule and outbox is empty.
    def settled() -> bool:
        lengths = [client.xlen(k) for k in RedisKeys.submission_streams()]
        lengths += [client.zcard(k) for k in RedisKeys.retry_schedules()]
        lengths += [client.xlen(k) for k in RedisKeys.event_outboxes()]
        return sum(lengths) == 0

    assert wait_until(settled, 60)

    # A late DSN to a delivered message's signed return path finds its team's records in
    # that team's group and suppresses the address there; another team's recipient
    # reported through the same return path (the attacker) changes nothing.
    record_of = {r.message_id: r for r in sink.records if r.answer_code == 250}
    victim, other = api_team, smtp_teams[0]
    bounced_id = next(m for m, t in expected.items() if t == victim and m in record_of)
    foreign = next(m for m, t in expected.items() if t == other and m in record_of)
    verp = record_of[bounced_id].mail_from
    before = {t: client.smembers(RedisKeys.suppression(t)) for t in teams}
    code, text = send_report(settings, verp, dsn(record_of[foreign].rcpt))
    assert code == 550 and b"never sent to the reported recipient" in text
    assert {t: client.smembers(RedisKeys.suppression(t)) for t in teams} == before
    code, text = send_report(settings, verp, dsn(record_of[bounced_id].rcpt))
    assert code == 250 and b"1 report items recorded" in text, text
    after = {t: client.smembers(RedisKeys.suppression(t)) for t in teams}
    assert after == {**before, victim: before[victim] | {record_of[bounced_id].rcpt.encode()}}
    # Each team's keys are on the master of its group's slot; all 3 masters hold keys.
    for team in teams:
        master = group_master(handle, slot_group(team))
        some = next(mid for mid, t in expected.items() if t == team and mid in counts)
        sent_key = RedisKeys.sent_recipients(team, some)
        assert client.exists(sent_key) == 1
        assert handle.master_of_slot(key_slot(sent_key.encode())) == master
    per_master = handle.keys_per_master()
    assert all(n > 0 for n in per_master.values()), per_master
    assert len({group_master(handle, g) for g in range(SLOT_GROUPS)}) == 3
    assert cross_slot_errors(handle) == {}
    for name in ("mta", "mta-delivery", "api"):
        log = cluster.stack.log_file(name).read_text(errors="replace").lower()
        assert not [w for w in CROSS_SLOT if w in log], f"{name} log mentions a cross-slot error"
    client.close()
    print(
        f"cluster e2e: {total} messages ({to_deliver} delivered once, "
        f"{3 * BOUNCES_PER_TEAM} bounced, {3 * DEFERS_PER_TEAM} expired after "
        f"{len(deferred_at_sink)} deferrals), "
        f"MTA killed after {at_kill} deliveries holding {held} entries; "
        f"keys per master {per_master}"
    )
