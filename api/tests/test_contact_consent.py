"""Consent: team members cannot subscribe people who did not agree, and an unsubscribe
holds even for a broadcast that was paused with the contact's job already queued."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.jobs.broadcast_fanout import parked_key
from api.models import Membership
from api.services.rendering import UNSUBSCRIBE_PURPOSE
from api.tests.conftest import SendingTeam, signup
from api.tests.test_broadcasts import _drain, _messages, _setup
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings

pytestmark = pytest.mark.integration


def _member(client: TestClient, team_id: str, role: str) -> dict[str, str]:
    auth = signup(client)
    user_id = client.get("/v1/me", headers=auth).json()["id"]
    with client.app.state.km.sessions.begin() as db:  # type: ignore[attr-defined]
        db.add(Membership(team_id=team_id, user_id=user_id, role=role))
    return auth


def _team_with_contact(client: TestClient, status: str) -> tuple[dict[str, str], str, str]:
    """Owner's auth, team base path, and a contact in ``status``."""
    owner = signup(client)
    team_id = client.post("/v1/teams", json={"name": "Consent"}, headers=owner).json()["id"]
    base = f"/v1/teams/{team_id}"
    double_opt_in = status == "pending"
    made = client.post(
        f"{base}/lists", json={"name": "News", "double_opt_in": double_opt_in}, headers=owner
    ).json()
    contact = client.post(
        f"{base}/lists/{made['id']}/contacts", json={"email": "ana@example.org"}, headers=owner
    ).json()
    if status == "unsubscribed":
        patch = {"status": "unsubscribed"}
        client.patch(f"{base}/contacts/{contact['id']}", json=patch, headers=owner)
    return owner, base, contact["id"]


@pytest.mark.parametrize("status", ["pending", "unsubscribed"])
@pytest.mark.parametrize("role", ["author", "manager"])
def test_a_member_cannot_subscribe_a_contact_that_did_not_consent(
    client: TestClient, status: str, role: str
) -> None:
    owner, base, contact_id = _team_with_contact(client, status)
    member = _member(client, base.rsplit("/", 1)[1], role)
    before = client.get(f"{base}/contacts/{contact_id}", headers=owner).json()
    assert before["status"] == status
    for query in ("", "?confirmed_consent=true"):  # the flag is an Administrator's
        refused = client.patch(
            f"{base}/contacts/{contact_id}{query}",
            json={"status": "subscribed", "first_name": "Changed"},
            headers=member,
        )
        assert refused.status_code == 403
        error = refused.json()["error"]
        assert error["code"] == "forbidden" and "confirmed_consent" in error["message"]
    assert client.get(f"{base}/contacts/{contact_id}", headers=owner).json() == before
    # Everything else stays an editor's job, unsubscribing included.
    named = client.patch(f"{base}/contacts/{contact_id}", json={"first_name": "A"}, headers=member)
    assert named.status_code == 200 and named.json()["status"] == status


def test_an_administrator_resubscribes_only_with_confirmed_consent(client: TestClient) -> None:
    owner, base, contact_id = _team_with_contact(client, "unsubscribed")
    path = f"{base}/contacts/{contact_id}"
    refused = client.patch(path, json={"status": "subscribed"}, headers=owner)
    assert refused.status_code == 403
    assert client.get(path, headers=owner).json()["status"] == "unsubscribed"
    done = client.patch(
        f"{path}?confirmed_consent=true", json={"status": "subscribed"}, headers=owner
    )
    assert done.status_code == 200 and done.json()["status"] == "subscribed"
    author = _member(client, base.rsplit("/", 1)[1], "author")
    dropped = client.patch(path, json={"status": "unsubscribed"}, headers=author)
    assert dropped.status_code == 200 and dropped.json()["status"] == "unsubscribed"


def test_a_csv_import_never_resubscribes_an_existing_contact(client: TestClient) -> None:
    owner, base, contact_id = _team_with_contact(client, "unsubscribed")
    author = _member(client, base.rsplit("/", 1)[1], "author")
    list_id = client.get(f"{base}/contacts/{contact_id}", headers=owner).json()["list_id"]
    csv = b"email,first_name\nana@example.org,Ana\nbo@example.org,Bo\n"
    report = client.post(f"{base}/lists/{list_id}/import", content=csv, headers=author).json()
    assert report["imported"] == 1
    assert report["errors"] == [{"line": 2, "message": "ana@example.org is already on this list"}]
    assert client.get(f"{base}/contacts/{contact_id}", headers=owner).json()["status"] == (
        "unsubscribed"
    )


def _token(client: TestClient, team_id: str, contact_id: str, email: str) -> str:
    """The link an earlier broadcast to this contact carried."""
    signer = client.app.state.km.signer  # type: ignore[attr-defined]
    return str(signer.dumps(UNSUBSCRIBE_PURPOSE, [team_id, contact_id, email, "m1@x.example"]))


def test_unsubscribing_suppresses_the_address_and_a_forged_link_changes_nothing(
    client: TestClient, team: SendingTeam, redis_client: Any
) -> None:
    lst, _broadcast = _setup(client, team, 2)
    base = f"/v1/teams/{team.team_id}"
    contacts = client.get(f"{base}/lists/{lst}/contacts", headers=team.auth).json()["data"]
    target = contacts[0]
    token = _token(client, team.team_id, target["id"], target["email"])
    suppression = RedisKeys.marketing_suppression(team.team_id)
    assert client.post(f"/u/{token}x", content=b"List-Unsubscribe=One-Click").status_code == 404
    assert client.get(f"/u/{token}").status_code == 200  # the page alone changes nothing
    assert redis_client.smembers(suppression) == set()
    statuses = client.get(f"{base}/lists/{lst}/contacts", headers=team.auth).json()["data"]
    assert {c["status"] for c in statuses} == {"subscribed"}

    assert client.post(f"/u/{token}", content=b"").status_code == 200  # the page's button
    assert redis_client.smembers(suppression) == {target["email"].encode()}
    listed = client.get(f"{base}/suppressions?kind=marketing", headers=team.auth).json()["data"]
    assert listed == [target["email"]]
    # Marketing only: the address is not on the all-mail list, transactional mail goes out.
    assert client.get(f"{base}/suppressions", headers=team.auth).json()["data"] == []
    receipt = {
        "from": f"receipts@{team.domain}",
        "to": [target["email"]],
        "subject": "Your receipt",
        "text": "Thanks",
    }
    sent = client.post("/v1/emails", json=receipt, headers=team.auth)
    assert sent.status_code == 200, sent.text
    after = client.get(f"{base}/contacts/{target['id']}", headers=team.auth).json()
    assert after["status"] == "unsubscribed"
    # Deleting and re-adding the contact does not make the address mailable again.
    client.delete(f"{base}/contacts/{target['id']}", headers=team.auth)
    again = client.post(
        f"{base}/lists/{lst}/contacts", json={"email": target["email"]}, headers=team.auth
    )
    assert again.status_code == 201
    assert redis_client.sismember(suppression, target["email"])


def test_a_contact_unsubscribed_during_a_pause_is_never_queued_after_resume(
    client: TestClient, team: SendingTeam, api_settings: Settings, redis_client: Any
) -> None:
    lst, broadcast = _setup(client, team, 3)
    base = f"/v1/teams/{team.team_id}"
    url = f"{base}/broadcasts/{broadcast}"
    client.post(f"{url}/launch", json={}, headers=team.auth)
    assert client.post(f"{url}/pause", headers=team.auth).json()["status"] == "paused"
    _drain(api_settings)  # fan-out done: every contact's job is parked
    assert _messages(redis_client) == []
    assert redis_client.llen(parked_key(team.team_id, broadcast)) == 3
    contacts = client.get(f"{base}/lists/{lst}/contacts", headers=team.auth).json()["data"]
    gone = contacts[1]
    token = _token(client, team.team_id, gone["id"], gone["email"])
    one_click = client.post(f"/u/{token}", content=b"List-Unsubscribe=One-Click")
    assert one_click.status_code == 200

    assert client.post(f"{url}/resume", headers=team.auth).json()["status"] == "sending"
    _drain(api_settings)
    recipients = sorted(m.recipients[0] for m in _messages(redis_client))
    assert recipients == sorted(c["email"] for c in contacts if c["id"] != gone["id"])
    assert not redis_client.exists(RedisKeys.broadcast_sent(team.team_id, broadcast, gone["id"]))
    progress = client.get(url, headers=team.auth).json()["progress"]
    assert progress["sent"] == 2 and progress["skipped"] == 1
