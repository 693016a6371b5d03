"""Roles cannot be escalated, played by a Manager who wants more: a key minted by a
Manager acts as a Manager, never as Administrator; nobody changes their own role, grants
or invites above their own role, or removes/demotes someone above it; the last
Administrator stays. Each refusal is checked to have changed nothing."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.models import Membership
from api.tests.conftest import signup
from api.tests.mailbox import queued_messages

pytestmark = pytest.mark.integration


@dataclass
class Team:
    client: TestClient
    id: str
    admin: dict[str, str]
    admin_id: str
    manager: dict[str, str]
    manager_id: str

    @property
    def base(self) -> str:
        return f"/v1/teams/{self.id}"

    def roles(self) -> dict[str, str]:
        members = self.client.get(f"{self.base}/members", headers=self.admin).json()["data"]
        return {m["user_id"]: m["role"] for m in members}

    def api_keys(self) -> list[dict[str, Any]]:
        return list(self.client.get(f"{self.base}/api-keys", headers=self.admin).json()["data"])

    def add_member(self, role: str) -> tuple[dict[str, str], str]:
        headers = signup(self.client)
        user_id = self.client.get("/v1/me", headers=headers).json()["id"]
        with self.client.app.state.km.sessions.begin() as db:  # type: ignore[attr-defined]
            db.add(Membership(team_id=self.id, user_id=user_id, role=role))
        return headers, user_id


@pytest.fixture
def team(client: TestClient) -> Team:
    admin = signup(client)
    team_id = client.post("/v1/teams", json={"name": "Esc"}, headers=admin).json()["id"]
    admin_id = client.get("/v1/me", headers=admin).json()["id"]
    made = Team(client, team_id, admin, admin_id, {}, "")
    made.manager, made.manager_id = made.add_member("manager")
    return made


def _refused(resp: Any, status: int = 403) -> None:
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["message"]


def test_a_full_key_minted_by_a_manager_acts_as_a_manager(team: Team) -> None:
    c = team.client
    minted = c.post(f"{team.base}/api-keys", json={"name": "mine"}, headers=team.manager)
    assert minted.status_code == 201 and minted.json()["role"] == "manager"
    key = {"Authorization": f"Bearer {minted.json()['key']}"}
    keys_before, roles_before = team.api_keys(), team.roles()
    # Manager things work ...
    assert c.get(f"{team.base}/api-keys", headers=key).status_code == 200
    assert c.get(team.base, headers=key).json()["your_role"] == "manager"
    # ... Administrator things do not.
    _refused(c.get(f"{team.base}/domains", headers=key))
    _refused(c.post(f"{team.base}/domains", json={"name": "x.example.com"}, headers=key))
    _refused(c.delete(f"{team.base}/members/{team.admin_id}", headers=key))
    _refused(c.patch(f"{team.base}/members/{team.admin_id}", json={"role": "author"}, headers=key))
    _refused(
        c.patch(
            f"{team.base}/members/{team.manager_id}", json={"role": "administrator"}, headers=key
        )
    )
    _refused(
        c.post(f"{team.base}/api-keys", json={"name": "up", "role": "administrator"}, headers=key)
    )
    # A key minted by that key inherits the Manager ceiling, not more.
    child = c.post(f"{team.base}/api-keys", json={"name": "child"}, headers=key)
    assert child.status_code == 201 and child.json()["role"] == "manager"
    child_key = {"Authorization": f"Bearer {child.json()['key']}"}
    _refused(c.get(f"{team.base}/domains", headers=child_key))
    assert team.roles() == roles_before
    assert [k["id"] for k in team.api_keys()] == sorted(
        [k["id"] for k in keys_before] + [child.json()["id"]]
    )
    assert c.get(f"{team.base}/domains", headers=team.admin).json()["data"] == []


def test_a_manager_cannot_mint_a_key_above_their_role(team: Team) -> None:
    before = team.api_keys()
    for scope in ("full", "sending"):
        body = {"name": "up", "scope": scope, "role": "administrator"}
        _refused(team.client.post(f"{team.base}/api-keys", json=body, headers=team.manager))
    assert team.api_keys() == before


def test_a_manager_cannot_change_their_own_role(team: Team) -> None:
    for role in ("administrator", "manager", "guest"):
        resp = team.client.patch(
            f"{team.base}/members/{team.manager_id}", json={"role": role}, headers=team.manager
        )
        _refused(resp)
    assert team.roles()[team.manager_id] == "manager"


def test_a_manager_cannot_remove_or_demote_an_administrator(team: Team) -> None:
    c = team.client
    second_admin, second_id = team.add_member("administrator")
    for admin_id in (team.admin_id, second_id):
        _refused(c.delete(f"{team.base}/members/{admin_id}", headers=team.manager))
        for role in ("manager", "author", "guest"):
            resp = c.patch(
                f"{team.base}/members/{admin_id}", json={"role": role}, headers=team.manager
            )
            _refused(resp)
    roles = team.roles()
    assert roles[team.admin_id] == roles[second_id] == "administrator"
    assert c.get(team.base, headers=second_admin).status_code == 200


def test_a_manager_cannot_invite_or_promote_above_their_role(team: Team) -> None:
    c = team.client
    email = f"esc-{uuid.uuid4().hex[:10]}@example.com"
    body = {"email": email, "role": "administrator"}
    _refused(c.post(f"{team.base}/invitations", json=body, headers=team.manager))
    redis = c.app.state.km.sync_redis  # type: ignore[attr-defined]
    assert queued_messages(redis, email) == []
    # An Administrator's pending invitation cannot be turned into another role either.
    assert c.post(f"{team.base}/invitations", json=body, headers=team.admin).status_code == 201
    lower = {"email": email, "role": "guest"}
    _refused(c.post(f"{team.base}/invitations", json=lower, headers=team.manager))
    assert len(queued_messages(redis, email)) == 1
    # Promoting an Author to Administrator is refused; to Manager (their own) is allowed.
    _author, author_id = team.add_member("author")
    up = {"role": "administrator"}
    _refused(c.patch(f"{team.base}/members/{author_id}", json=up, headers=team.manager))
    assert team.roles()[author_id] == "author"
    peer = c.patch(
        f"{team.base}/members/{author_id}", json={"role": "manager"}, headers=team.manager
    )
    assert peer.status_code == 200 and team.roles()[author_id] == "manager"


def test_the_last_administrator_stays(team: Team) -> None:
    c = team.client
    key = c.post(f"{team.base}/api-keys", json={"name": "adm"}, headers=team.admin).json()
    key_auth = {"Authorization": f"Bearer {key['key']}"}
    for headers in (team.admin, key_auth):
        _refused(c.delete(f"{team.base}/members/{team.admin_id}", headers=headers), 409)
        demote = {"role": "manager"}
        resp = c.patch(f"{team.base}/members/{team.admin_id}", json=demote, headers=headers)
        _refused(resp, 409)
    assert team.roles()[team.admin_id] == "administrator"
    # With a second Administrator, one may step down.
    _second, second_id = team.add_member("administrator")
    stepped = c.patch(
        f"{team.base}/members/{team.admin_id}", json={"role": "manager"}, headers=team.admin
    )
    assert stepped.status_code == 200 and team.roles()[second_id] == "administrator"
