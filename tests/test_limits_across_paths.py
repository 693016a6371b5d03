"""One send budget per team across the API and SMTP (kibamail.team_budget).

The attacker holds an API key and an SMTP credential of one team and spreads mail over
both, hoping each path has its own budget. Both charge the same bucket and daily counter
(per recipient), so whatever the mix, the team gets its budget once: the path that
crosses it is refused (API 429, SMTP 451 4.7.1) and nothing beyond it is queued.
"""

from __future__ import annotations

import smtplib
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.tests import conftest as api_fixtures
from api.tests.conftest import RecordingProducer, SendingTeam
from kibamail import team_budget
from kibamail.contracts import OutboundMessage
from kibamail.redis_keys import RedisKeys
from kibamail.settings import REPO_ROOT, SendingLimits, Settings
from mta.config import load_config
from mta.credentials import create_smtp_credential
from mta.tests.conftest import start_mta
from mta.tests.helpers import with_policy, write_policy
from testing.submissions import submission_entries

pytestmark = pytest.mark.integration

api_settings = api_fixtures.api_settings
team = api_fixtures.team

TLS = ssl.create_default_context()
TLS.check_hostname = False
TLS.verify_mode = ssl.CERT_NONE
SLOW = 0.001  # refills nothing during a test


@pytest.fixture
def limits(request: Any) -> SendingLimits:
    return SendingLimits(per_second=SLOW, **request.param)


@pytest.fixture
def both_paths(
    api_settings: Settings,
    redis_client: Any,
    kafka_service: str,
    tmp_path: Path,
    limits: SendingLimits,
) -> Iterator[tuple[TestClient, Settings]]:
    """The API app and the MTA's SMTP listeners (no delivery: queued entries stay), both
    configured with the same team limits."""
    from local_stack.stack import tcp_open

    policy = write_policy(
        tmp_path / "policies.toml",
        per_second=limits.per_second,
        burst=limits.burst,
        per_day=limits.per_day,
    )
    mta_settings = with_policy(api_settings, policy)
    _thread, stop = start_mta(mta_settings, delivery=False)
    deadline = time.monotonic() + 10
    while not tcp_open(mta_settings.mta.submission_port) and time.monotonic() < deadline:
        time.sleep(0.05)
    app = create_app(
        api_settings.model_copy(update={"sending": limits}),
        producer=RecordingProducer(),
        run_scheduler=False,
    )
    try:
        with TestClient(app) as client:
            yield client, mta_settings
    finally:
        stop()


class Smtp:
    """An authenticated submission session of the team."""

    def __init__(self, settings: Settings, redis: Any, team: SendingTeam) -> None:
        self.credential = create_smtp_credential(redis, team.team_id)
        self.port = settings.mta.submission_port
        self.sender = f"a@{team.domain}"

    def send(self, recipients: list[str]) -> tuple[int, str]:
        data = (
            f"From: {self.sender}\r\nTo: {', '.join(recipients)}\r\nSubject: s\r\n\r\nHi.\r\n"
        ).encode()
        with smtplib.SMTP("127.0.0.1", self.port, timeout=15) as smtp:
            smtp.starttls(context=TLS)
            smtp.ehlo()
            smtp.login(*self.credential)
            smtp.mail(self.sender)
            for rcpt in recipients:
                smtp.rcpt(rcpt)
            code, reply = smtp.data(data)
        return code, reply.decode()


def _email(team: SendingTeam, recipients: int) -> dict[str, Any]:
    to = [f"api{i}@example.org" for i in range(recipients)]
    return {"from": f"a@{team.domain}", "to": to, "subject": "s", "text": "t"}


def _rcpts(count: int, prefix: str = "smtp") -> list[str]:
    return [f"{prefix}{i}@example.org" for i in range(count)]


def _queued(redis: Any) -> list[str]:
    """Recipients of every entry in the MTA stream."""
    found: list[str] = []
    for _, fields in submission_entries(redis):
        found += OutboundMessage.from_stream_fields(fields).recipients
    return found


def _day_count(redis: Any, team_id: str) -> int:
    return int(redis.get(RedisKeys.team_daily_sent(team_id, team_budget.utc_day())) or 0)


@pytest.mark.parametrize("limits", [{"burst": 1000, "per_day": 5}], indirect=True)
def test_api_and_smtp_share_the_daily_cap(
    both_paths: tuple[TestClient, Settings], team: SendingTeam, redis_client: Any
) -> None:
    client, mta_settings = both_paths
    smtp = Smtp(mta_settings, redis_client, team)
    assert client.post("/v1/emails", json=_email(team, 3), headers=team.auth).is_success
    assert smtp.send(_rcpts(2))[0] == 250  # 5 of 5 used
    code, reply = smtp.send(_rcpts(1, "late"))
    assert code == 451 and reply.startswith("4.7.1 Daily sending limit"), reply
    refused = client.post("/v1/emails", json=_email(team, 1), headers=team.auth)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "daily_cap_reached"
    batch = client.post("/v1/emails/batch", json=[_email(team, 1)], headers=team.auth)
    assert batch.status_code == 429
    assert sorted(_queued(redis_client)) == sorted(_rcpts(3, "api") + _rcpts(2))
    assert _day_count(redis_client, team.team_id) == 5


@pytest.mark.parametrize("limits", [{"burst": 4, "per_day": 1000}], indirect=True)
def test_api_and_smtp_share_the_rate_bucket(
    both_paths: tuple[TestClient, Settings], team: SendingTeam, redis_client: Any
) -> None:
    client, mta_settings = both_paths
    smtp = Smtp(mta_settings, redis_client, team)
    assert smtp.send(_rcpts(3))[0] == 250
    over = client.post("/v1/emails", json=_email(team, 2), headers=team.auth)
    assert over.status_code == 429 and over.json()["error"]["code"] == "rate_limited"
    assert over.headers["RateLimit-Remaining"] == "1" and "Retry-After" in over.headers
    assert client.post("/v1/emails", json=_email(team, 1), headers=team.auth).is_success
    code, reply = smtp.send(_rcpts(1, "late"))
    assert code == 451 and reply.startswith("4.7.1 Rate limit exceeded"), reply
    assert sorted(_queued(redis_client)) == sorted([*_rcpts(3), "api0@example.org"])
    assert _day_count(redis_client, team.team_id) == 4


def test_the_shipped_mta_policy_and_the_shared_limits_agree() -> None:
    """One budget, two readers: the MTA's policy file and Settings.sending must say the
    same, or the path with the larger figures could refill the shared bucket further."""
    config = load_config(REPO_ROOT / "mta" / "config" / "policies.toml")
    params = {entry.name: entry.params for entry in config.policies}
    shared = SendingLimits()
    assert params["rate_limit"] == {
        "per_second": shared.per_second,
        "burst": shared.burst,
        "per_day": shared.per_day,
    }
    assert params["bulk_gate"]["max_score"] == shared.bulk_max_score


@pytest.mark.parametrize("limits", [{"burst": 1000, "per_day": 1000}], indirect=True)
def test_a_message_the_bulk_gate_refuses_costs_no_budget(
    both_paths: tuple[TestClient, Settings], team: SendingTeam, redis_client: Any
) -> None:
    """The bulk gate runs before the rate limit in the shipped chain order."""
    _client, mta_settings = both_paths
    redis_client.set(RedisKeys.reputation_throttle("bulk_score", team.team_id), "0.95")
    code, _reply = Smtp(mta_settings, redis_client, team).send(_rcpts(3))
    assert code == 550
    assert _queued(redis_client) == [] and _day_count(redis_client, team.team_id) == 0
