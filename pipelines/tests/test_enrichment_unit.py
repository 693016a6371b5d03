from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from bytewax.testing import TestingSink, TestingSource, run_main

from kibamail.contracts import (
    EmailClickEvent,
    EmailOpenEvent,
    EnrichedClickEvent,
    EnrichedOpenEvent,
    MessageMapping,
    Topic,
    deserialize,
    serialize,
)
from kibamail.settings import PipelineSettings, PipelineTuning, Settings
from pipelines.enrichment import build_flow
from pipelines.machine import machine_reason, parse_user_agent
from pipelines.tests.fakes import T0, FakeRedis, source_message
from pipelines.tests.geo import write_city_db

pytestmark = pytest.mark.unit

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)
OPENS, CLICKS = Topic.EMAIL_OPENS.value, Topic.EMAIL_CLICKS.value


def opened(message_id: str, seconds: float = 0, **kw: object) -> bytes:
    return serialize(
        EmailOpenEvent(
            team_id="team-1",
            message_id=message_id,
            occurred_at=T0 + timedelta(seconds=seconds),
            **kw,
        )
    )


def clicked(message_id: str, seconds: float, link: str, **kw: object) -> bytes:
    return serialize(
        EmailClickEvent(
            team_id="team-1",
            message_id=message_id,
            occurred_at=T0 + timedelta(seconds=seconds),
            link_id=link,
            url=f"https://shop.example/{link}",
            **kw,
        )
    )


def run(inputs: Sequence[object], redis: FakeRedis, geoip: Path | None = None) -> list:
    out: list = []
    tuning = PipelineTuning(mapping_retry_delays_seconds=[0.05], scanner_click_seconds=2.0)
    settings = Settings(pipelines=PipelineSettings(geoip_database=geoip, tuning=tuning))
    flow = build_flow(
        settings,
        source=TestingSource(inputs, batch_size=100),
        sink=TestingSink(out),
        redis_factory=lambda: redis,
    )
    run_main(flow)
    return out


@pytest.fixture
def redis() -> FakeRedis:
    fake = FakeRedis()
    for i in range(5):
        fake.map(f"m{i}", MessageMapping(team_id="team-1", broadcast_id="b1", contact_id=f"c{i}"))
    return fake


def test_geo_user_agent_and_mapping(redis: FakeRedis, tmp_path: Path) -> None:
    db = write_city_db(tmp_path / "city.mmdb")
    out = run([source_message(OPENS, opened("m1", ip="81.2.69.160", user_agent=IPHONE))], redis, db)
    [msg] = out
    assert msg.topic == Topic.CLICKHOUSE_EMAIL_OPENS.value
    event = deserialize(EnrichedOpenEvent, msg.value)
    assert (event.country, event.city, event.latitude) == ("GB", "London", 51.5142)
    assert (event.ua_os, event.ua_device) == ("iOS", "iPhone")
    assert (event.broadcast_id, event.contact_id) == ("b1", "c1")
    assert event.is_first and not event.is_machine


def test_first_open_per_message_ignores_machines(redis: FakeRedis) -> None:
    inputs = [
        source_message(OPENS, opened("m1", 0, ip="17.58.1.2", user_agent="Mozilla/5.0")),
        source_message(OPENS, opened("m1", 5, user_agent=GMAIL_PROXY)),
        source_message(OPENS, opened("m1", 60, ip="89.160.20.1", user_agent=IPHONE)),
        source_message(OPENS, opened("m1", 90, ip="89.160.20.1", user_agent=IPHONE)),
        source_message(OPENS, opened("m2", 1, ip="89.160.20.1", user_agent=IPHONE)),
    ]
    events = [deserialize(EnrichedOpenEvent, m.value) for m in run(inputs, redis)]
    flags = [(e.message_id, e.is_machine, e.machine_reason, e.is_first) for e in events]
    assert flags == [
        ("m1", True, "apple_mpp", False),
        ("m1", True, "gmail_image_proxy", False),
        ("m1", False, "", True),
        ("m1", False, "", False),
        ("m2", False, "", True),
    ]


def test_scanner_clicking_every_link_within_seconds(redis: FakeRedis) -> None:
    inputs = [
        source_message(CLICKS, clicked("m3", 10.0, "a")),
        source_message(CLICKS, clicked("m3", 10.4, "b")),
        source_message(CLICKS, clicked("m3", 10.9, "c")),
        source_message(CLICKS, clicked("m4", 10.0, "a", user_agent="Mimecast Safe Links")),
        source_message(CLICKS, clicked("m4", 300.0, "b", user_agent=IPHONE)),
    ]
    events = [deserialize(EnrichedClickEvent, m.value) for m in run(inputs, redis)]
    flags = [(e.message_id, e.link_id, e.machine_reason, e.is_first) for e in events]
    assert flags == [
        ("m3", "a", "", True),
        ("m3", "b", "link_scanner", False),
        ("m3", "c", "link_scanner", False),
        ("m4", "a", "security_scanner", False),
        ("m4", "b", "", True),
    ]


def test_bad_input_and_missing_mapping(redis: FakeRedis) -> None:
    inputs = [
        source_message(OPENS, b'{"team_id": "team-1"}'),
        source_message(CLICKS, b"\xff\xfe"),
        source_message(OPENS, opened("unmapped", 1, ip="89.160.20.1", user_agent=IPHONE)),
        TestingSource.PAUSE(timedelta(seconds=0.4)),
    ]
    out = run(inputs, redis)
    letters = [orjson.loads(m.value) for m in out if m.topic == Topic.DEAD_LETTER.value]
    assert sorted(letter["reason"].split(":")[0] for letter in letters) == [
        "invalid EmailOpenEvent",
        "malformed JSON",
    ]
    # An open whose mapping never shows up is kept (it happened), just without contact.
    [kept] = [m for m in out if m.topic == Topic.CLICKHOUSE_EMAIL_OPENS.value]
    event = deserialize(EnrichedOpenEvent, kept.value)
    assert (event.message_id, event.contact_id, event.is_first) == ("unmapped", "", True)


def test_machine_reason_rules() -> None:
    assert machine_reason("17.1.2.3", IPHONE) == "apple_mpp"
    assert machine_reason("81.2.69.160", "Mozilla/5.0") == "apple_mpp"
    assert machine_reason("81.2.69.160", "python-requests/2.31") == "security_scanner"
    assert machine_reason("81.2.69.160", IPHONE) == ""
    assert parse_user_agent("").client == ""
