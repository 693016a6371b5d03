"""The API's conventions, played as a client would: ETag/If-Match against lost updates
(a stale write is 412 and changes nothing), another team's ids are 404 on the new paths,
cursor pages, ISO-8601 UTC timestamps, 405 with the full Allow list, 415 for a body that
is not JSON, and an out-of-range `before` cursor refused (it reached the warehouse as a
503 before schemathesis found it)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.tests.conftest import signup

pytestmark = pytest.mark.integration


def _team(client: TestClient) -> tuple[dict[str, str], str]:
    auth = signup(client)
    team = client.post("/v1/teams", json={"name": "Conventions"}, headers=auth)
    assert team.status_code == 201 and team.headers["ETag"]
    return auth, team.json()["id"]


def _stale_write_refused(
    client: TestClient,
    auth: dict[str, str],
    url: str,
    method: str,
    first: dict[str, Any],
    second: dict[str, Any],
) -> None:
    """Two editors read the same version; the first write wins, the second is 412 and
    the resource stays as the first left it."""
    etag = client.get(url, headers=auth).headers["ETag"]
    ok = client.request(method, url, json=first, headers={**auth, "If-Match": etag})
    assert ok.status_code == 200, ok.text
    assert ok.headers["ETag"] != etag
    after_first = client.get(url, headers=auth)
    stale = client.request(method, url, json=second, headers={**auth, "If-Match": etag})
    assert stale.status_code == 412, stale.text
    assert stale.json()["error"]["code"] == "precondition_failed"
    again = client.get(url, headers=auth)
    assert again.json() == after_first.json()
    assert again.headers["ETag"] == after_first.headers["ETag"] == ok.headers["ETag"]


def test_team_rename_with_if_match(client: TestClient) -> None:
    auth, team = _team(client)
    url = f"/v1/teams/{team}"
    _stale_write_refused(client, auth, url, "PATCH", {"name": "First"}, {"name": "Second"})
    assert client.get(url, headers=auth).json()["name"] == "First"


def test_template_and_contact_updates_with_if_match(client: TestClient) -> None:
    auth, team = _team(client)
    body = {"name": "t", "subject": "Hi", "text": "one"}
    template = client.post(f"/v1/teams/{team}/templates", json=body, headers=auth).json()
    url = f"/v1/teams/{team}/templates/{template['id']}"
    _stale_write_refused(
        client, auth, url, "PUT", {**body, "text": "first"}, {**body, "text": "second"}
    )
    assert client.get(url, headers=auth).json()["text"] == "first"

    contact_list = client.post(f"/v1/teams/{team}/lists", json={"name": "l"}, headers=auth).json()
    contact = client.post(
        f"/v1/teams/{team}/lists/{contact_list['id']}/contacts",
        json={"email": "c@example.org"},
        headers=auth,
    ).json()
    url = f"/v1/teams/{team}/contacts/{contact['id']}"
    _stale_write_refused(client, auth, url, "PATCH", {"first_name": "Ada"}, {"first_name": "Grace"})
    assert client.get(url, headers=auth).json()["first_name"] == "Ada"
    assert client.get(url, headers=auth).json()["created_at"].endswith("Z")


def test_stale_delete_refused_for_domains_templates_and_contacts(client: TestClient) -> None:
    auth, team = _team(client)
    domain = client.post(
        f"/v1/teams/{team}/domains", json={"name": "etag-check.example.com"}, headers=auth
    )
    assert domain.status_code == 201, domain.text
    url = f"/v1/teams/{team}/domains/{domain.json()['id']}"
    stale = client.delete(url, headers={**auth, "If-Match": '"0123456789abcdef"'})
    assert stale.status_code == 412
    assert client.get(url, headers=auth).status_code == 200
    current = client.get(url, headers=auth).headers["ETag"]
    assert client.delete(url, headers={**auth, "If-Match": current}).status_code == 200
    assert client.get(url, headers=auth).status_code == 404


def test_another_teams_ids_are_404_not_412(client: TestClient) -> None:
    auth, team = _team(client)
    attacker, attacker_team = _team(client)
    template = client.post(
        f"/v1/teams/{team}/templates", json={"name": "t", "subject": "s"}, headers=auth
    )
    etag = template.headers["ETag"]
    tid = template.json()["id"]
    # The attacker's own team path with the victim's template id, and the victim's team.
    for url in (
        f"/v1/teams/{attacker_team}/templates/{tid}",
        f"/v1/teams/{team}/templates/{tid}",
    ):
        put = client.put(
            url,
            json={"name": "pwned", "subject": "pwned"},
            headers={**attacker, "If-Match": etag},
        )
        assert put.status_code == 404, put.text
        assert put.json()["error"]["code"] == "not_found"
    rename = client.patch(
        f"/v1/teams/{team}", json={"name": "pwned"}, headers={**attacker, "If-Match": "*"}
    )
    assert rename.status_code == 404
    assert client.get(f"/v1/teams/{team}", headers=auth).json()["name"] == "Conventions"
    assert client.get(f"/v1/teams/{team}/templates/{tid}", headers=auth).json()["name"] == "t"
    for path in ("members", "domains", "fields", "webhooks", "smtp-credentials"):
        assert client.get(f"/v1/teams/{team}/{path}", headers=attacker).status_code == 404


def test_lists_page_by_cursor(client: TestClient) -> None:
    auth, team = _team(client)
    for name in ("a", "b", "c"):
        client.post(f"/v1/teams/{team}/fields", json={"name": name}, headers=auth)
    first = client.get(f"/v1/teams/{team}/fields", params={"limit": 2}, headers=auth).json()
    assert [f["name"] for f in first["data"]] == ["a", "b"] and first["next_cursor"]
    rest = client.get(
        f"/v1/teams/{team}/fields",
        params={"limit": 2, "cursor": first["next_cursor"]},
        headers=auth,
    ).json()
    assert [f["name"] for f in rest["data"]] == ["c"] and rest["next_cursor"] is None
    members = client.get(f"/v1/teams/{team}/members", params={"limit": 1}, headers=auth).json()
    assert len(members["data"]) == 1 and members["next_cursor"] is None


def test_405_lists_every_method_and_415_for_non_json(client: TestClient) -> None:
    auth, team = _team(client)
    resp = client.request("OPTIONS", f"/v1/teams/{team}/templates/x", headers=auth)
    assert resp.status_code == 405
    assert resp.headers["Allow"] == "DELETE, GET, PUT"
    literal = client.request("OPTIONS", f"/v1/teams/{team}/webhooks/event-types", headers=auth)
    assert literal.headers["Allow"] == "GET"
    form = client.post(
        f"/v1/teams/{team}/templates",
        content=b"name=t&subject=s",
        headers={**auth, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 415
    assert form.json()["error"]["code"] == "unsupported_media_type"


def test_messages_before_out_of_range_is_422(client: TestClient) -> None:
    auth, team = _team(client)
    for before in ("0113-07-20T13:29:36.5+10:33", "0.5", ""):
        resp = client.get(f"/v1/teams/{team}/messages", params={"before": before}, headers=auth)
        assert resp.status_code == 422, (before, resp.text)
        assert resp.json()["error"]["details"][0]["path"] == "before"
