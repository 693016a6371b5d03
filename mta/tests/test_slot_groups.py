"""The MTA's queue, outcome commit, outbox and report lookups across slot groups, on one
Redis node and on a real 3-master cluster (``redis_cluster``): every group's stream is
read, a MULTI stays in its group's slot (a cross-slot one would raise), and an entry or a
record planted in another team's group changes nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from redis.crc import key_slot
from redis.exceptions import ResponseError

from kibamail.contracts import MessageStatus, Topic
from kibamail.intake import queue_on_pipeline, submit_async
from kibamail.redis_keys import SLOT_GROUPS, RedisKeys, group_tag, slot_group
from kibamail.settings import Settings
from mta.commit import OutcomeRecorder
from mta.config import QueueConfig, load_config
from mta.delivery import DeliveryWorker
from mta.events import OutboxPublisher
from mta.markers import MarkerWriter
from mta.outcomes import Outcome
from mta.queue import SubmissionQueue
from mta.report_verify import ReportItem, ReportRecorder
from testing.redis_cluster import RedisClusterHandle

from .helpers import StatusReader, make_message, status_offsets, with_policy, write_policy


def teams_in_distinct_groups(count: int) -> list[str]:
    """Team ids whose slot groups all differ."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < count:
        team = f"team-g-{n}"
        found.setdefault(slot_group(team), team)
        n += 1
    return list(found.values())


@pytest.fixture(params=["single", "cluster"])
async def client(
    request: pytest.FixtureRequest, redis_client: Any, redis_service: str
) -> AsyncIterator[Any]:
    """An asyncio client on the session's single node, then on the 3-master cluster."""
    if request.param == "single":
        conn: Any = redis.asyncio.Redis.from_url(redis_service)
    else:
        handle: RedisClusterHandle = request.getfixturevalue("redis_cluster")
        handle.flush()
        conn = redis.asyncio.cluster.RedisCluster.from_url(handle.url)
    yield conn
    await conn.aclose()


def queue_config() -> QueueConfig:
    return QueueConfig(claim_idle_seconds=0.2, retry_base_seconds=0.1, retry_max_seconds=0.2)


async def test_every_group_stream_is_read_reclaimed_and_retried(client: Any) -> None:
    teams = teams_in_distinct_groups(5)
    queue = SubmissionQueue(client, queue_config(), "reader-1")
    await queue.ensure_group()
    sent = {}
    for team in teams:
        msg = make_message([f"a@{team}.example.org"], team=team)
        await submit_async(client, msg)
        sent[msg.message_id] = slot_group(team)
    got: list[tuple[int, Any]] = []
    deadline = time.monotonic() + 10
    while len(got) < len(teams) and time.monotonic() < deadline:
        got += await queue.read_new(64, block_ms=200)
    from kibamail.contracts import OutboundMessage

    read = {OutboundMessage.from_stream_fields(f).message_id: g for g, (_eid, f) in got}
    assert read == sent  # each entry came back with its own team's group
    assert await queue.depths() == (len(teams), 0, 0.0)

    # A second worker takes over the entries the first one left pending.
    await asyncio.sleep(0.3)
    other = SubmissionQueue(client, queue_config(), "reader-2")
    reclaimed = await other.reclaim(10)
    assert sorted((g, e[0]) for g, e in reclaimed) == sorted((g, e[0]) for g, e in got)

    # Ack one entry per group and schedule its retry; the mover puts it back in its group.
    pipe = client.pipeline(transaction=False)
    for g, (eid, f) in got:
        msg = OutboundMessage.from_stream_fields(f)
        SubmissionQueue.schedule(pipe, g, msg, time.time() - 1)
        SubmissionQueue.ack(pipe, g, eid)
    await pipe.execute()
    xlen, retries, _overdue = await queue.depths()
    assert (xlen, retries) == (0, len(teams))
    assert await queue.move_due() == len(teams)
    again: list[tuple[int, Any]] = []
    deadline = time.monotonic() + 10
    while len(again) < len(teams) and time.monotonic() < deadline:
        again += await queue.read_new(64, block_ms=200)
    assert {OutboundMessage.from_stream_fields(f).message_id: g for g, (_e, f) in again} == sent


async def test_an_outcome_multi_stays_in_its_group(client: Any, tmp_path: Path) -> None:
    """Delivered, bounced (suppressed), soft-bounced and deferred outcomes of one entry:
    one MULTI with the XACK, every key in the team's slot (a cluster refuses anything else)."""
    team = "team-outcome"
    group = slot_group(team)
    config = queue_config()
    queue = SubmissionQueue(client, config, "w")
    await queue.ensure_group()
    rcpts = ["ok@x.org", "gone@x.org", "full@x.org", "later@x.org"]
    msg = make_message(rcpts, team=team)
    msg = msg.model_copy(
        update={"data": msg.data.replace(b"Message-ID:", b"X-Kibamail-Message-ID:", 1)}
    )
    msg = msg.model_copy(update={"data": b"Message-ID: <own@client>\r\n" + msg.data})
    await submit_async(client, msg)
    [(g, (entry_id, _f))] = await queue.read_new(10, block_ms=500)
    assert g == group
    outcomes = [
        Outcome(rcpts[0], MessageStatus.DELIVERED, 250, "ok", return_ref="ref0123456789abc"),
        Outcome(rcpts[1], MessageStatus.BOUNCED, 550, "5.1.1 user unknown",
                bounce_reason="user_unknown", bounce_action="suppress"),
        Outcome(rcpts[2], MessageStatus.BOUNCED, 552, "5.2.2 mailbox full",
                bounce_reason="mailbox_full", bounce_action="retry"),
        Outcome(rcpts[3], MessageStatus.DEFERRED, 451, "4.3.0 later",
                bounce_reason="system_error", bounce_action="retry"),
    ]  # fmt: skip
    await OutcomeRecorder(client, queue, config).record(group, entry_id, msg, outcomes)
    assert await client.sismember(RedisKeys.suppression(team), "gone@x.org")
    assert await client.exists(RedisKeys.soft_bounces(team, "full@x.org"))
    assert await client.zcard(RedisKeys.retry_schedule(group)) == 1
    assert await client.hget(RedisKeys.sent_recipients(team, msg.message_id), "rcpt:ok@x.org")
    assert await client.get(RedisKeys.return_path(team, "ref0123456789abc"))
    assert await client.smembers(RedisKeys.client_message_id("own@client")) == {
        msg.message_id.encode()
    }
    assert await client.xlen(RedisKeys.event_outbox(group)) == 2 * len(rcpts)  # accepted + outcome
    assert await queue.depths() == (0, 1, 0.0)
    pending = await client.xpending(RedisKeys.submission_stream(group), RedisKeys.SUBMISSION_GROUP)
    assert pending["pending"] == 0


async def test_an_entry_planted_in_another_teams_group_is_dead_lettered(
    client: Any, test_settings: Settings, tmp_path: Path
) -> None:
    """Attacker: an entry naming team A written to team B's group stream (its keys would
    span two slots) is set aside, acknowledged, never delivered; A's keys stay empty."""
    victim, other = teams_in_distinct_groups(2)
    settings = with_policy(test_settings, write_policy(tmp_path / "p.toml"))
    worker = DeliveryWorker(settings, load_config(settings.mta.policy_file), client)
    await worker.queue.ensure_group()
    forged = make_message(["x@victim.example.org"], team=victim)
    wrong = slot_group(other)
    pipe = client.pipeline(transaction=False)
    queue_on_pipeline(pipe, forged)
    await pipe.execute()
    # The intake put it in the victim's group; the attacker copies it into another group.
    [(g, (_eid, fields))] = await worker.queue.read_new(10, block_ms=500)
    assert g == slot_group(victim)
    await client.xadd(RedisKeys.submission_stream(wrong), fields)
    moved = [e for e in await worker.queue.read_new(10, block_ms=500) if e[0] == wrong]
    assert len(moved) == 1
    before = await client.xlen(RedisKeys.event_outbox(slot_group(victim)))
    await worker.process(wrong, moved[0][1][0], moved[0][1][1], fresh=True)
    letters = await client.xrange(RedisKeys.event_outbox(wrong))
    assert [f[b"topic"] for _id, f in letters] == [Topic.DEAD_LETTER.value.encode()]
    assert await client.xlen(RedisKeys.submission_stream(wrong)) == 0  # acknowledged
    assert await client.xlen(RedisKeys.event_outbox(slot_group(victim))) == before
    assert not await client.exists(RedisKeys.sent_recipients(victim, forged.message_id))
    worker.sync_redis.close()


async def test_reports_find_their_message_in_any_group_and_refuse_misplaced_records(
    client: Any, test_settings: Settings
) -> None:
    team, other = teams_in_distinct_groups(2)
    config = load_config(test_settings.mta.policy_file)
    recorder = ReportRecorder(client, config)
    pipe = client.pipeline(transaction=False)
    sent = RedisKeys.sent_recipients(team, "m1@x")
    pipe.hset(sent, mapping={"team": team, "kind": "transactional", "rcpt:a@x.org": "r1"})
    pipe.set(RedisKeys.return_path(team, "r1"), "m1@x")
    # Attacker: a record claiming to be `team`'s, planted in another group's keys.
    planted = RedisKeys.sent_recipients(other, "m2@x")
    pipe.hset(planted, mapping={"team": team, "kind": "transactional", "rcpt:b@x.org": "r2"})
    pipe.set(RedisKeys.return_path(other, "r2"), "m2@x")
    await pipe.execute()

    def bounce(message_id: str, rcpt: str) -> ReportItem:
        return ReportItem(message_id, rcpt, MessageStatus.BOUNCED, 550, "5.1.1", "gone",
                          reason="user_unknown", action="suppress")  # fmt: skip

    result = await recorder.record([bounce("", "a@x.org")], "r1")
    assert (result.recorded, result.refused) == (1, "")
    assert await client.sismember(RedisKeys.suppression(team), "a@x.org")
    assert await client.xlen(RedisKeys.event_outbox(slot_group(team))) == 1
    by_id = await recorder.record([bounce("m1@x", "a@x.org")], None)
    assert by_id.duplicates == 1  # found again by message id alone, recorded once

    refused = await recorder.record([bounce("", "b@x.org")], "r2")
    assert (refused.recorded, refused.refused) == (0, "unknown_message")
    refused = await recorder.record([bounce("m2@x", "b@x.org")], None)
    assert (refused.recorded, refused.refused) == (0, "unknown_message")
    assert not await client.sismember(RedisKeys.suppression(team), "b@x.org")
    assert await client.xlen(RedisKeys.event_outbox(slot_group(other))) == 0


async def test_the_outbox_publisher_drains_every_group(
    client: Any, test_settings: Settings, kafka_service: str
) -> None:
    from mta.events import add_to_outbox, make_status_event

    offsets = status_offsets(test_settings)
    ids = {}
    pipe = client.pipeline(transaction=False)
    for team in teams_in_distinct_groups(6):
        message_id = f"{team}-{time.time_ns()}@outbox.example"
        event = make_status_event(
            message_id=message_id, team_id=team, status=MessageStatus.ACCEPTED, recipient="r@x"
        )
        add_to_outbox(pipe, Topic.MESSAGE_STATUSES, message_id, event,
                      RedisKeys.event_outbox(slot_group(team)))  # fmt: skip
        ids[message_id] = event.event_id
    await pipe.execute()
    stop = asyncio.Event()
    task = asyncio.create_task(OutboxPublisher(test_settings, client).run(stop))
    reader = StatusReader(test_settings, start_offsets=offsets, message_ids=set(ids))
    try:
        events = await asyncio.to_thread(
            reader.poll_until, lambda ev: {e.message_id for e in ev} >= set(ids), 60
        )
    finally:
        reader.close()
        stop.set()
        await asyncio.wait_for(task, 30)
    assert {e.message_id: e.event_id for e in events} == ids
    lengths = [await client.xlen(k) for k in RedisKeys.event_outboxes()]
    assert sum(lengths) == 0


def test_group_tags_land_in_their_own_slot_ranges() -> None:
    slots = [key_slot(group_tag(g)[1:-1].encode()) for g in range(SLOT_GROUPS)]
    assert [s * SLOT_GROUPS // 16384 for s in slots] == list(range(SLOT_GROUPS))


async def test_in_doubt_markers_go_to_the_master_of_their_key(
    redis_cluster: RedisClusterHandle,
) -> None:
    from redis.cluster import RedisCluster

    redis_cluster.flush()
    sync = RedisCluster.from_url(redis_cluster.url)
    writer = MarkerWriter(redis_cluster.url, sync, cluster=True)
    await writer.connect()
    keys = [RedisKeys.delivery_progress(g, "1-0") for g in range(SLOT_GROUPS)]
    for key in keys:
        writer.hset_now(key, {"a@x.org": b"in-doubt"})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and sum(sync.exists(k) for k in keys) < len(keys):
        await asyncio.sleep(0.05)
    assert [sync.hget(k, "a@x.org") for k in keys] == [b"in-doubt"] * len(keys)
    await writer.close()
    sync.close()


async def test_warmup_and_reputation_reads_stay_in_one_slot(
    client: Any, test_settings: Settings, tmp_path: Path
) -> None:
    """Warm-up takes the day and hour counters of one IP x provider in one Lua call (one
    tag); the reputation unit's flag read mixes a team key and IP keys (split per slot)."""
    from mta.policies import FlagCache, PolicyChain, PolicyContext
    from mta.reputation import ip_provider_keys

    settings = with_policy(test_settings, write_policy(tmp_path / "p.toml", warmup_cap=2))
    chain = PolicyChain(load_config(settings.mta.policy_file))
    warmup = chain.unit("warmup")
    assert warmup is not None
    ctx = PolicyContext(
        redis=client, stage="delivery", team_id="t", pool="marketing",
        source_ips=["127.0.0.2"], source_ip="127.0.0.2", provider_group="google",
    )  # fmt: skip
    actions = [(await warmup.check(ctx)).action for _ in range(3)]
    assert actions == ["accept", "accept", "hold"]  # the cap of 2, counted once each

    keys = [
        RedisKeys.reputation_throttle("team", "t"),
        *ip_provider_keys("1.2.3.4", "google", "x.org"),
    ]
    await client.set(keys[0], b'{"action": "slow", "factor": 0.5}')
    await client.set(keys[-1], b'{"action": "pause"}')
    values = await FlagCache().get_many(client, keys)
    assert values == [b'{"action": "slow", "factor": 0.5}', None, b'{"action": "pause"}']


async def test_group_commit_sends_each_groups_multi_to_its_master(
    redis_cluster: RedisClusterHandle,
) -> None:
    """One MULTI per group on a plain connection to the group's master (redis-py's cluster
    transactions cost a thread per command); a batch sent to a master that no longer
    serves the slot is refused whole (MOVED), and the next one finds the right master."""
    from redis.asyncio.cluster import RedisCluster

    from mta.group_commit import GroupCommit

    redis_cluster.flush()
    client = RedisCluster.from_url(redis_cluster.url)
    commit = GroupCommit(client)

    def writes(group: int) -> Any:
        def build(pipe: Any) -> None:
            pipe.set(RedisKeys.retry_job(group, "a"), "1")
            pipe.zadd(RedisKeys.retry_schedule(group), {"a": 1})

        return build

    results = await asyncio.gather(*(commit.run(writes(g), g) for g in range(SLOT_GROUPS)))
    assert all(r == [True, 1] for r in results)
    masters = {address for address, _batcher in commit._groups.values()}
    assert len(masters) == 3  # the 16 groups' MULTIs went to the 3 masters

    # The slots "moved": group 0's batcher points at a master that does not serve them.
    wrong = next(a for a in masters if a != commit._groups[0][0])
    from kibamail.redis_batching import PipelineBatcher

    commit._groups[0] = (
        commit._groups[0][0],
        PipelineBatcher(commit._nodes[wrong], transaction=True),
    )
    with pytest.raises(ResponseError):  # MOVED
        await commit.run(writes(0), 0)
    assert 0 not in commit._groups  # forgotten: the next batch asks the slot map again
    assert await client.zcard(RedisKeys.retry_schedule(0)) == 1  # nothing half-written
    await asyncio.sleep(0.2)
    assert await commit.run(writes(0), 0) == [True, 0]  # back on the right master
    await commit.aclose()
    await client.aclose()
