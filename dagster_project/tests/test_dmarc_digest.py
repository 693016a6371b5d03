"""The DMARC digest goes to each team's Administrators as platform mail, once a day."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from dagster_project.defs.dmarc.digest import DomainDigest, send_digests, team_administrators
from kibamail.contracts import MessageMapping, OutboundMessage, deserialize
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from testing.submissions import submission_entries

pytestmark = pytest.mark.integration

DAY = date(2026, 11, 27)
DIGEST = DomainDigest("news.example.com", 120, 110, 115, 100, 4, 6, 3, "quarantine")


@pytest.fixture
def api_database(tmp_path: Path) -> tuple[str, str]:
    """A migrated API database with one team: an Administrator and a Guest."""
    from api.db import make_engine, make_sessionmaker, migrate
    from api.models.accounts import Membership, Role
    from api.services.accounts import create_team, create_user

    url = f"sqlite:///{tmp_path / 'api.db'}"
    migrate(url)
    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:
        owner = create_user(session, "owner@customer.example", "correct horse battery")
        guest = create_user(session, "guest@customer.example", "correct horse battery")
        team = create_team(session, owner, "Customer")
        session.add(Membership(team_id=team.id, user_id=guest.id, role=Role.GUEST.value))
        session.commit()
        team_id = team.id
    engine.dispose()
    return url, team_id


def test_digest_is_queued_for_administrators_only_and_once(
    redis_client: Any, api_database: tuple[str, str], test_settings: Settings
) -> None:
    url, team_id = api_database
    admins = team_administrators(url)
    assert admins == {team_id: ["owner@customer.example"]}

    digests = {team_id: [DIGEST], "team_without_admins": [DIGEST]}
    first = send_digests(redis_client, test_settings, digests, admins, DAY)
    assert first == {team_id: "sent", "team_without_admins": "no_admins"}

    entries = submission_entries(redis_client)
    assert len(entries) == 1
    message = OutboundMessage.from_stream_fields(entries[0][1])
    # platform mail: sent under the platform team (never billed), not the customer's
    assert message.team_id == test_settings.notifications.team_id != team_id
    assert message.recipients == ["owner@customer.example"]
    body = message.data.decode()
    assert "Subject: DMARC digest 2026-11-27" in body
    assert "news.example.com: 120 messages from 3 sources, 91.7% DMARC pass" in body
    assert f"Message-ID: <{message.message_id}>" in body
    mapping = redis_client.get(RedisKeys.message_mapping(message.team_id, message.message_id))
    assert mapping is not None
    assert "dmarc-digest" in deserialize(MessageMapping, mapping).tags
    assert redis_client.get(RedisKeys.dmarc_digest_sent(team_id, DAY.isoformat()))

    again = send_digests(redis_client, test_settings, digests, admins, DAY)
    assert again[team_id] == "already_sent"
    assert len(submission_entries(redis_client)) == 1
