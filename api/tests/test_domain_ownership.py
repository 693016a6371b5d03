"""Domains are owned: two teams adding one name keep separate keys, flags and status; a
squatter without the ownership token never becomes ready nor touches the owner; the
platform's notification domain is nobody's to add."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.tests.conftest import RecordingProducer, signup
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from kibamail.system_mail import sender_address
from testing.testnet import DnsServer, Zone

pytestmark = pytest.mark.integration


@pytest.fixture
def zone(api_settings: Settings, redis_client: Any) -> Iterator[tuple[Zone, TestClient]]:
    with DnsServer(zone=Zone(catch_all=False)) as server:
        settings = api_settings.model_copy(
            update={"mta": api_settings.mta.model_copy(update={"dns_port": server.port})}
        )
        app = create_app(settings, producer=RecordingProducer(), run_scheduler=False)
        with TestClient(app) as client:
            yield server.zone, client


def _team(client: TestClient, name: str) -> tuple[str, dict[str, str]]:
    auth = signup(client)
    return client.post("/v1/teams", json={"name": name}, headers=auth).json()["id"], auth


def _records(domain: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["record"]: r for r in domain["records"]}


def _publish(dns: Zone, domain: dict[str, Any], *keys: str) -> None:
    records = _records(domain)
    for key in keys:
        dns.add(records[key]["name"], records[key]["type"], records[key]["value"])


def _state(redis: Any, team: str, name: str) -> tuple[Any, Any]:
    return redis.get(RedisKeys.domain_ready(team, name)), redis.hgetall(
        RedisKeys.dkim_key(team, name)
    )


def test_squatter_never_touches_the_owner_and_needs_the_token(
    zone: tuple[Zone, TestClient], redis_client: Any
) -> None:
    dns, client = zone
    name = f"owned-{uuid.uuid4().hex[:8]}.test"
    owner, owner_auth = _team(client, "Owner")
    squatter, squatter_auth = _team(client, "Squatter")
    settings = client.app.state.km.settings  # type: ignore[attr-defined]
    dns.add(f"_spf.{settings.mta.hostname}", "TXT", "v=spf1 ip4:127.0.0.1 -all")

    mine = client.post(f"/v1/teams/{owner}/domains", json={"name": name}, headers=owner_auth).json()
    _publish(dns, mine, "spf", "dkim_rsa", "dmarc")
    verified = client.post(f"/v1/teams/{owner}/domains/{mine['id']}/verify", headers=owner_auth)
    assert verified.json()["ready"] is True
    owner_before = _state(redis_client, owner, name)
    assert owner_before[0] == b"1"

    # The squatter adds the same name: its own row, key and token; the owner's are untouched.
    added = client.post(f"/v1/teams/{squatter}/domains", json={"name": name}, headers=squatter_auth)
    assert added.status_code == 201, added.text
    theirs = added.json()
    assert theirs["status"] == "pending" and _records(theirs)["ownership"]["required"] is True
    assert _records(theirs)["ownership"]["value"] != _records(mine)["ownership"]["value"]
    assert _state(redis_client, owner, name) == owner_before
    squatter_key = redis_client.hgetall(RedisKeys.dkim_key(squatter, name))
    assert squatter_key[b"private_key"] != owner_before[1][b"private_key"]

    # Even with its DKIM key in DNS, the squatter's verify fails without the token record.
    _publish(dns, theirs, "dkim_rsa")
    url = f"/v1/teams/{squatter}/domains/{theirs['id']}/verify"
    checked = client.post(url, headers=squatter_auth).json()
    assert checked["ready"] is False and checked["status"] == "pending"
    assert checked["checks"]["ownership"]["status"] == "fail"
    assert "kibamail-verify=" in checked["checks"]["ownership"]["reasons"][0]
    assert redis_client.get(RedisKeys.domain_ready(squatter, name)) is None
    assert _state(redis_client, owner, name) == owner_before
    # The owner's own re-check is not held by the squatter's row (it held the name first).
    again = client.post(f"/v1/teams/{owner}/domains/{mine['id']}/verify", headers=owner_auth)
    assert (
        again.json()["ready"] is True and _records(again.json())["ownership"]["required"] is False
    )
    owner_view = client.get(f"/v1/teams/{owner}/domains/{mine['id']}", headers=owner_auth).json()
    assert owner_view["status"] == "verified"

    # The squatter removes its row: only its own key goes.
    client.delete(f"/v1/teams/{squatter}/domains/{theirs['id']}", headers=squatter_auth)
    assert not redis_client.exists(RedisKeys.dkim_key(squatter, name))
    assert _state(redis_client, owner, name) == owner_before


def test_a_contested_name_becomes_ready_with_the_teams_token(
    zone: tuple[Zone, TestClient], redis_client: Any
) -> None:
    """A squatter added the name first: the real owner proves control with its token."""
    dns, client = zone
    name = f"contested-{uuid.uuid4().hex[:8]}.test"
    squatter, squatter_auth = _team(client, "Early squatter")
    owner, owner_auth = _team(client, "Late owner")
    settings = client.app.state.km.settings  # type: ignore[attr-defined]
    dns.add(f"_spf.{settings.mta.hostname}", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    client.post(f"/v1/teams/{squatter}/domains", json={"name": name}, headers=squatter_auth)
    mine = client.post(f"/v1/teams/{owner}/domains", json={"name": name}, headers=owner_auth).json()
    _publish(dns, mine, "spf", "dkim_rsa", "dmarc")
    url = f"/v1/teams/{owner}/domains/{mine['id']}/verify"
    assert client.post(url, headers=owner_auth).json()["ready"] is False
    _publish(dns, mine, "ownership")
    assert client.post(url, headers=owner_auth).json()["ready"] is True
    assert redis_client.get(RedisKeys.domain_ready(owner, name)) == b"1"
    assert redis_client.get(RedisKeys.domain_ready(squatter, name)) is None


def test_the_notification_domain_cannot_be_added(
    zone: tuple[Zone, TestClient], redis_client: Any
) -> None:
    _dns, client = zone
    settings = client.app.state.km.settings  # type: ignore[attr-defined]
    platform = sender_address(settings).rsplit("@", 1)[1]
    team, auth = _team(client, "Impostor")
    for name in (platform, f"mail.{platform}", platform.upper()):
        resp = client.post(f"/v1/teams/{team}/domains", json={"name": name}, headers=auth)
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"]["code"] == "domain_reserved"
    assert client.get(f"/v1/teams/{team}/domains", headers=auth).json()["data"] == []
    assert not redis_client.exists(RedisKeys.dkim_key(team, platform))
