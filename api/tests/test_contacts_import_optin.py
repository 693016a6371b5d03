"""CSV import into a double opt-in list: contacts arrive `pending` and each is mailed the
confirmation link once (real Redis: the queued email is read back and its link used)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

import api.services.contacts_import as contacts_import
import api.services.notifications as notifications
from api.models import Membership
from api.tests.conftest import signup
from api.tests.mailbox import link_in, queued_messages

pytestmark = pytest.mark.integration

CSV = b"email,first_name\nana@x.com,Ana\nbo@x.com,Bo\ncy@x.com,Cy\n"
ADDRESSES = ["ana@x.com", "bo@x.com", "cy@x.com"]


def _opt_in_list(client: TestClient) -> tuple[dict[str, str], str, str]:
    auth = signup(client)
    team = client.post("/v1/teams", json={"name": "Imports"}, headers=auth).json()["id"]
    base = f"/v1/teams/{team}"
    made = client.post(
        f"{base}/lists", json={"name": "Weekly", "double_opt_in": True}, headers=auth
    )
    return auth, base, made.json()["id"]


def _statuses(client: TestClient, auth: dict[str, str], base: str, list_id: str) -> set[str]:
    page = client.get(f"{base}/lists/{list_id}/contacts", headers=auth).json()
    return {contact["status"] for contact in page["data"]}


def test_imported_contacts_are_pending_and_each_confirmation_link_works(
    client: TestClient, redis_client: Any
) -> None:
    auth, base, list_id = _opt_in_list(client)
    report = client.post(f"{base}/lists/{list_id}/import", content=CSV, headers=auth).json()
    assert report["imported"] == 3 and report["status"] == "pending"
    assert report["confirmation_emails"] == 3
    assert _statuses(client, auth, base, list_id) == {"pending"}
    for address in ADDRESSES:
        [(message, parsed)] = queued_messages(redis_client, address)
        assert parsed["Subject"] == notifications.CONFIRM_SUBJECT  # no customer text
        assert "'Weekly'" in parsed.get_body(preferencelist=("plain",)).get_content()
        assert message.team_id == client.app.state.km.settings.notifications.team_id  # type: ignore[attr-defined]
    link = link_in(queued_messages(redis_client, "bo@x.com")[0][1], "/confirm/")
    assert client.post(link).json() == {"email": "bo@x.com", "status": "subscribed"}
    assert _statuses(client, auth, base, list_id) == {"pending", "subscribed"}

    again = client.post(f"{base}/lists/{list_id}/import", content=CSV, headers=auth).json()
    assert again["imported"] == 0 and again["confirmation_emails"] == 0
    assert all("already on this list" in error["message"] for error in again["errors"])
    assert all(len(queued_messages(redis_client, a)) == 1 for a in ADDRESSES)


def test_a_reimport_mails_pending_contacts_a_first_import_never_mailed(
    client: TestClient, redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth, base, list_id = _opt_in_list(client)
    with monkeypatch.context() as patch:  # the first import dies before mailing
        patch.setattr(
            contacts_import, "mail_confirmations", lambda *_: contacts_import.Mailing(0, [])
        )
        client.post(f"{base}/lists/{list_id}/import", content=CSV, headers=auth)
    assert all(queued_messages(redis_client, a) == [] for a in ADDRESSES)
    again = client.post(f"{base}/lists/{list_id}/import", content=CSV, headers=auth).json()
    assert again["confirmation_emails"] == 3
    assert all(len(queued_messages(redis_client, a)) == 1 for a in ADDRESSES)


def test_only_an_administrator_may_import_contacts_as_already_confirmed(
    client: TestClient, redis_client: Any
) -> None:
    auth, base, list_id = _opt_in_list(client)
    manager = signup(client)
    user_id = client.get("/v1/me", headers=manager).json()["id"]
    team_id = base.rsplit("/", 1)[1]
    with client.app.state.km.sessions.begin() as db:  # type: ignore[attr-defined]
        db.add(Membership(team_id=team_id, user_id=user_id, role="manager"))
    path = f"{base}/lists/{list_id}/import?already_confirmed=true"
    refused = client.post(path, content=CSV, headers=manager)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert client.get(f"{base}/lists/{list_id}/contacts", headers=auth).json()["data"] == []
    report = client.post(path, content=CSV, headers=auth).json()
    assert report["imported"] == 3 and report["status"] == "subscribed"
    assert "confirmation_emails" not in report
    assert _statuses(client, auth, base, list_id) == {"subscribed"}
    assert all(queued_messages(redis_client, a) == [] for a in ADDRESSES)
