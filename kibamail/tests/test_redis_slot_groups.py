"""The cluster key layout (kibamail.redis_keys): slot groups spread evenly over the hash
slots, stay stable, and every team-scoped key carries its team's tag first."""

from __future__ import annotations

import uuid

import pytest
from redis.crc import key_slot

from kibamail.redis_keys import (
    SLOT_GROUPS,
    RedisKeys,
    group_tag,
    slot_group,
    team_tag,
)


def _slot(key: str) -> int:
    return key_slot(key.encode())


def test_each_group_tag_hashes_into_its_own_sixteenth_of_the_slots() -> None:
    per_group = 16384 // SLOT_GROUPS
    slots = [_slot(f"x:{group_tag(g)}:y") for g in range(SLOT_GROUPS)]
    assert [s // per_group for s in slots] == list(range(SLOT_GROUPS))
    assert len({group_tag(g) for g in range(SLOT_GROUPS)}) == SLOT_GROUPS


def test_group_tags_and_team_groups_are_stable() -> None:
    # Changing these remaps every key in production: the values are part of the contract.
    assert [group_tag(g) for g in (0, 3, 15)] == ["{g0-20}", "{g3-10}", "{g15-3}"]
    team = "5f0c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f"
    assert slot_group(team) == slot_group(team)
    import zlib

    assert slot_group(team) == zlib.crc32(team.encode()) % SLOT_GROUPS


def test_many_teams_spread_over_every_group() -> None:
    counts = [0] * SLOT_GROUPS
    for _ in range(4000):
        counts[slot_group(str(uuid.uuid4()))] += 1
    assert min(counts) > 4000 / SLOT_GROUPS / 2  # every group used, none starved


def test_a_teams_keys_share_one_slot() -> None:
    team = str(uuid.uuid4())
    keys = [
        RedisKeys.suppression(team),
        RedisKeys.marketing_suppression(team),
        RedisKeys.idempotency(team, "k1"),
        RedisKeys.team_paused(team),
        RedisKeys.team_send_bucket(team),
        RedisKeys.team_daily_sent(team, "20260101"),
        RedisKeys.reputation_throttle("bulk_score", team),
        RedisKeys.reputation_throttle("team", team),
        RedisKeys.domain_ready(team, "Example.com"),
        RedisKeys.dkim_key(team, "example.com"),
        RedisKeys.message_mapping(team, "m1@example.com"),
        RedisKeys.broadcast_sent(team, "b1", "c1"),
        RedisKeys.api_key(team, "ab" * 32),
        RedisKeys.api_rate_bucket(team, "ab" * 32),
        RedisKeys.api_key_used(team, "ab" * 32),
        RedisKeys.team_submission_stream(team),
        RedisKeys.event_outbox(slot_group(team)),
        RedisKeys.retry_schedule(slot_group(team)),
        RedisKeys.retry_job(team, "j1"),
        RedisKeys.delivery_progress(slot_group(team), "1-0"),
        RedisKeys.return_path(slot_group(team), "ref"),
        RedisKeys.sent_recipients(team, "m1@example.com"),
        RedisKeys.soft_bounces(team, "a@b.c"),
        RedisKeys.suppression_reasons(team),
        RedisKeys.fix_our_side(team, "20260101"),
        RedisKeys.report_seen(team, "m1", "a@b.c", "bounced"),
        RedisKeys.team_pause_audit(team),
        RedisKeys.scoring_reset(team),
        RedisKeys.team_recent_subjects(team),
        RedisKeys.team_smtp_credentials(team),
        RedisKeys.platform_mail_count("team-invite", team, "h:1"),
        RedisKeys.dmarc_digest_sent(team, "20260101"),
    ]
    assert {_slot(k) for k in keys} == {_slot(team_tag(team))}
    assert all(k.index("{") < k.index(team) for k in keys if team in k)


def test_per_group_keys_list_every_group_once() -> None:
    for listing in (
        RedisKeys.submission_streams(),
        RedisKeys.event_outboxes(),
        RedisKeys.retry_schedules(),
    ):
        assert len(listing) == SLOT_GROUPS
        assert sorted(_slot(k) // (16384 // SLOT_GROUPS) for k in listing) == list(
            range(SLOT_GROUPS)
        )


def test_the_paused_pattern_reads_the_team_back() -> None:
    import fnmatch

    key = RedisKeys.team_paused("team-a")
    assert fnmatch.fnmatchcase(key, RedisKeys.TEAM_PAUSED_PATTERN)
    assert RedisKeys.team_of_paused_key(key) == "team-a"


@pytest.mark.parametrize("forged", ["{g0-20}", "a}b", "x{"])
def test_an_id_with_braces_is_refused(forged: str) -> None:
    # A brace in a team id would move its keys to a slot (or a team) it chose itself.
    with pytest.raises(ValueError):
        RedisKeys.suppression(forged)
    with pytest.raises(ValueError):
        RedisKeys.team_submission_stream(forged)
