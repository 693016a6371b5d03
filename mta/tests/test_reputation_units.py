"""Reputation throttling decisions, one test per decision (a fake Redis; no I/O)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from kibamail.redis_keys import RedisKeys
from mta.config import load_config
from mta.policies import FlagCache, PolicyChain, PolicyContext, provider_group
from mta.reputation import (
    ReputationThrottle,
    ip_provider_keys,
    parse_throttle,
    rank_source_ips,
    worst,
)

from .helpers import write_policy

pytestmark = pytest.mark.unit

SHIPPED = Path(__file__).resolve().parents[1] / "config" / "policies.toml"


class FakeRedis:
    """get/mget plus a scripted GCRA answer; counts round trips."""

    def __init__(self, values: dict[str, bytes], slot: tuple[int, str] = (1, "0")) -> None:
        self.values = values
        self.slot = slot
        self.mgets = 0
        self.slot_calls: list[list[Any]] = []

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        self.mgets += 1
        return [self.values.get(k) for k in keys]

    def register_script(self, _source: str) -> Any:
        async def run(keys: list[str], args: list[Any]) -> list[Any]:
            self.slot_calls.append([*keys, *args])
            return list(self.slot)

        return run


def _decision(action: str, factor: float = 0.0, reason: str = "bounce 12%") -> bytes:
    return orjson.dumps({"action": action, "factor": factor, "reason": reason, "event_id": "e"})


def _unit(tmp_path: Path) -> ReputationThrottle:
    config = load_config(write_policy(tmp_path / "p.toml", team_per_second=8))
    unit = next(u for u in PolicyChain(config).units if u.name == "reputation_throttle")
    assert isinstance(unit, ReputationThrottle)
    unit.flags = FlagCache(ttl=0)
    return unit


def _ctx(redis: FakeRedis, ips: list[str], domain: str = "example.org") -> PolicyContext:
    return PolicyContext(
        redis=redis,
        stage="delivery",
        team_id="t1",
        recipients=[f"a@{domain}"],
        recipient_domain=domain,
        provider_group="google" if domain == "gmail.com" else "default",
        pool="marketing",
        source_ips=list(ips),
        source_ip=ips[0],
    )


def test_parse_throttle_accepts_decisions_and_ignores_garbage() -> None:
    assert parse_throttle(_decision("slow", 0.25)).factor == 0.25
    assert parse_throttle(_decision("pause")).action == "pause"
    assert parse_throttle(_decision("slow", 0.0)).action == "pause"
    for raw in (None, b"", b"not json", b'{"factor": 1}', b'{"action": "explode"}'):
        assert parse_throttle(raw) is None
    slow, pause = parse_throttle(_decision("slow", 0.5)), parse_throttle(_decision("pause"))
    assert worst([None, slow, pause]) is pause and worst([slow, None]) is slow


def test_keys_match_the_flink_provider_names() -> None:
    """Flink emits ip|google for gmail.com and ip|<domain> for unknown providers."""
    config = load_config(SHIPPED)
    for domain, group in [("gmail.com", "google"), ("hotmail.com", "microsoft"),
                          ("yahoo.com", "yahoo"), ("icloud.com", "apple")]:  # fmt: skip
        assert provider_group(config, domain) == group
        key = RedisKeys.reputation_throttle("ip_provider", f"1.2.3.4|{group}")
        assert ip_provider_keys("1.2.3.4", group, domain)[0] == key
    assert ip_provider_keys("1.2.3.4", "default", "corp.example") == [
        RedisKeys.reputation_throttle("ip_provider", "1.2.3.4|corp.example")
    ]


def test_rank_puts_healthy_ips_first_and_drops_paused() -> None:
    slow, pause = parse_throttle(_decision("slow", 0.5)), parse_throttle(_decision("pause"))
    usable, paused = rank_source_ips(["a", "b", "c"], {"a": slow, "b": pause, "c": None})
    assert usable == ["c", "a"] and list(paused) == ["b"]


def test_team_pause_holds_with_the_reason(tmp_path: Path) -> None:
    redis = FakeRedis({RedisKeys.reputation_throttle("team", "t1"): _decision("pause")})
    verdict = asyncio.run(_unit(tmp_path).check(_ctx(redis, ["127.0.0.2"])))
    assert verdict.action == "hold" and verdict.code == 451 and "bounce 12%" in verdict.text
    assert verdict.retry_after == 0.3 and redis.slot_calls == []


def test_ip_provider_pause_moves_mail_to_a_healthy_ip(tmp_path: Path) -> None:
    key = RedisKeys.reputation_throttle("ip_provider", "127.0.0.2|google")
    redis = FakeRedis({key: _decision("pause")})
    ctx = _ctx(redis, ["127.0.0.2", "127.0.0.3"], domain="gmail.com")
    verdict = asyncio.run(_unit(tmp_path).check(ctx))
    assert verdict.action == "accept"
    assert ctx.source_ips == ["127.0.0.3"] and ctx.source_ip == "127.0.0.3"
    assert redis.mgets == 1  # team + every IP's keys in one round trip


def test_ip_provider_pause_of_every_ip_holds(tmp_path: Path) -> None:
    key = RedisKeys.reputation_throttle("ip_provider", "127.0.0.1|example.org")
    redis = FakeRedis({key: _decision("pause", reason="defer 40%")})
    verdict = asyncio.run(_unit(tmp_path).check(_ctx(redis, ["127.0.0.1"])))
    assert verdict.action == "hold" and "defer 40%" in verdict.text and "paused" in verdict.text


def test_ip_provider_slow_paces_that_ip(tmp_path: Path) -> None:
    key = RedisKeys.reputation_throttle("ip_provider", "127.0.0.2|example.org")
    redis = FakeRedis({key: _decision("slow", 0.25)})
    ctx = _ctx(redis, ["127.0.0.2", "127.0.0.3"])
    assert asyncio.run(_unit(tmp_path).check(ctx)).action == "accept"
    # healthy IP first; the slowed one paced at slow_base_per_minute (600) x 0.25
    assert ctx.source_ips == ["127.0.0.3", "127.0.0.2"]
    assert ctx.pace_per_minute == {"127.0.0.2": 150.0}


def test_team_slow_takes_a_slot_at_the_reduced_rate(tmp_path: Path) -> None:
    team_key = RedisKeys.reputation_throttle("team", "t1")
    redis = FakeRedis({team_key: _decision("slow", 0.5)}, slot=(1, "0"))
    assert asyncio.run(_unit(tmp_path).check(_ctx(redis, ["127.0.0.1"]))).action == "accept"
    bucket, _now, interval, max_wait = redis.slot_calls[0]
    assert bucket == RedisKeys.rate_bucket("t1", "reputation")
    assert interval == pytest.approx(1 / (8 * 0.5)) and max_wait == 0.2


def test_team_slow_without_a_near_slot_holds_until_then(tmp_path: Path) -> None:
    team_key = RedisKeys.reputation_throttle("team", "t1")
    redis = FakeRedis({team_key: _decision("slow", 0.5, "complaint 0.2%")}, slot=(0, "3.0"))
    verdict = asyncio.run(_unit(tmp_path).check(_ctx(redis, ["127.0.0.1"])))
    assert verdict.action == "hold" and "slowed to 50%" in verdict.text
    assert "complaint 0.2%" in verdict.text and 3.0 <= verdict.retry_after <= 4.5


def test_flag_cache_get_many_reads_each_key_once_per_ttl() -> None:
    redis = FakeRedis({"a": b"1"})
    cache = FlagCache(ttl=60)
    assert asyncio.run(cache.get_many(redis, ["a", "b"])) == [b"1", None]
    assert asyncio.run(cache.get_many(redis, ["b", "a"])) == [None, b"1"]
    assert redis.mgets == 1
