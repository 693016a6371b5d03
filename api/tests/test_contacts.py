"""Lists, contacts, custom fields, double opt-in, CSV import with per-row errors, suppressions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.services.notifications import CONFIRM_SUBJECT
from api.tests.conftest import signup
from api.tests.mailbox import link_in, queued_messages
from api.tests.test_contacts_csv import MULTILINE_CSV, chunks_of

pytestmark = pytest.mark.integration


def _team(client: TestClient) -> tuple[dict[str, str], str]:
    auth = signup(client)
    return auth, client.post("/v1/teams", json={"name": "C"}, headers=auth).json()["id"]


def test_contacts_crud_with_custom_fields(client: TestClient) -> None:
    auth, team = _team(client)
    base = f"/v1/teams/{team}"
    lst = client.post(f"{base}/lists", json={"name": "News"}, headers=auth).json()
    bad = client.post(
        f"{base}/lists/{lst['id']}/contacts",
        json={"email": "a@x.com", "fields": {"plan": "pro"}},
        headers=auth,
    )
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["path"] == "fields.plan"
    assert client.post(f"{base}/fields", json={"name": "plan"}, headers=auth).status_code == 201
    made = client.post(
        f"{base}/lists/{lst['id']}/contacts",
        json={"email": "A@x.com", "fields": {"plan": "pro"}},
        headers=auth,
    )
    assert made.status_code == 201 and made.json()["email"] == "a@x.com"
    dup = client.post(f"{base}/lists/{lst['id']}/contacts", json={"email": "a@x.com"}, headers=auth)
    assert dup.status_code == 409
    cid = made.json()["id"]
    patched = client.patch(
        f"{base}/contacts/{cid}", json={"first_name": "Ann", "status": "unsubscribed"}, headers=auth
    )
    assert patched.json()["first_name"] == "Ann" and patched.json()["status"] == "unsubscribed"
    assert client.delete(f"{base}/contacts/{cid}", headers=auth).status_code == 200
    assert client.get(f"{base}/contacts/{cid}", headers=auth).status_code == 404


def test_cursor_pagination_walks_every_contact_once(client: TestClient) -> None:
    auth, team = _team(client)
    base = f"/v1/teams/{team}"
    lst = client.post(f"{base}/lists", json={"name": "P"}, headers=auth).json()["id"]
    for i in range(7):
        client.post(f"{base}/lists/{lst}/contacts", json={"email": f"p{i}@x.com"}, headers=auth)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"{base}/lists/{lst}/contacts", params=params, headers=auth).json()
        seen += [c["email"] for c in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(f"p{i}@x.com" for i in range(7))


def test_double_opt_in_mails_a_link_that_confirms_the_contact(
    client: TestClient, redis_client: Any
) -> None:
    auth, team = _team(client)
    base = f"/v1/teams/{team}"
    lst = client.post(
        f"{base}/lists", json={"name": "Deals", "double_opt_in": True}, headers=auth
    ).json()["id"]
    made = client.post(
        f"{base}/lists/{lst}/contacts", json={"email": "d@x.com"}, headers=auth
    ).json()
    assert made["status"] == "pending" and made["confirmation_sent"] is True
    assert not any("/confirm/" in str(value) for value in made.values())
    mails = queued_messages(redis_client, "d@x.com")
    assert len(mails) == 1 and mails[0][1]["Subject"] == CONFIRM_SUBJECT  # no customer text
    assert "'Deals'" in mails[0][1].get_body(preferencelist=("plain",)).get_content()
    path = link_in(mails[0][1], "/confirm/")
    assert client.post(path + "x").status_code == 400
    page = client.get(path)  # a scanner prefetching the link confirms nothing
    assert page.status_code == 200 and 'method="post"' in page.text
    assert client.get(f"{base}/contacts/{made['id']}", headers=auth).json()["status"] == "pending"
    assert client.post(path).json()["status"] == "subscribed"
    assert "already subscribed" in client.get(path).text
    assert client.get(f"{base}/contacts/{made['id']}", headers=auth).json()["status"] == (
        "subscribed"
    )


def test_expired_confirmation_link_changes_nothing(
    client: TestClient, redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import api.routers.contacts as contacts_module

    auth, team = _team(client)
    base = f"/v1/teams/{team}"
    lst = client.post(
        f"{base}/lists", json={"name": "D", "double_opt_in": True}, headers=auth
    ).json()["id"]
    made = client.post(
        f"{base}/lists/{lst}/contacts", json={"email": "e@x.com"}, headers=auth
    ).json()
    path = link_in(queued_messages(redis_client, "e@x.com")[0][1], "/confirm/")
    monkeypatch.setattr(contacts_module, "CONFIRM_MAX_AGE", -1)
    refused = client.post(path)
    assert refused.status_code == 400 and "expired" in refused.json()["error"]["message"]
    assert client.get(f"{base}/contacts/{made['id']}", headers=auth).json()["status"] == "pending"


def test_lists_without_double_opt_in_send_no_email(client: TestClient, redis_client: Any) -> None:
    auth, team = _team(client)
    base = f"/v1/teams/{team}"
    lst = client.post(f"{base}/lists", json={"name": "Plain"}, headers=auth).json()["id"]
    made = client.post(f"{base}/lists/{lst}/contacts", json={"email": "f@x.com"}, headers=auth)
    assert made.json()["status"] == "subscribed"
    assert queued_messages(redis_client, "f@x.com") == []


def _csv_chunks(rows: int) -> Iterator[bytes]:
    yield b"email,first_name,plan\n"
    for i in range(rows):
        if i % 1000 == 7:
            yield f"broken-{i},x,free\n".encode()
        else:
            yield f"c{i}@example.com,N{i},free\n".encode()
    yield b"c1@example.com,again,free\n"
    yield b"only,two\n"


def test_csv_import_reports_bad_rows_and_imports_good_ones(client: TestClient) -> None:
    auth, team = _team(client)
    base = f"/v1/teams/{team}"
    client.post(f"{base}/fields", json={"name": "plan"}, headers=auth)
    lst = client.post(f"{base}/lists", json={"name": "I"}, headers=auth).json()["id"]
    resp = client.post(
        f"{base}/lists/{lst}/import",
        content=_csv_chunks(5000),
        headers={**auth, "Content-Type": "text/csv"},
    )
    assert resp.status_code == 200, resp.text
    report = resp.json()
    assert report["imported"] == 4995
    assert report["failed"] == 7
    lines = {e["line"] for e in report["errors"]}
    assert {9, 1009, 5002, 5003} <= lines
    page = client.get(f"{base}/lists/{lst}/contacts", params={"limit": 1}, headers=auth).json()
    assert page["data"][0]["fields"] == {"plan": "free"}
    unknown = client.post(
        f"{base}/lists/{lst}/import", content=b"email,nope\na@b.com,1\n", headers=auth
    )
    assert unknown.json()["imported"] == 0 and "nope" in unknown.json()["errors"][0]["message"]


def test_import_of_multiline_records_reports_the_right_rows(client: TestClient) -> None:
    auth = signup(client)
    team = client.post("/v1/teams", json={"name": "CSV"}, headers=auth).json()["id"]
    base = f"/v1/teams/{team}"
    client.post(f"{base}/fields", json={"name": "notes"}, headers=auth)
    lst = client.post(f"{base}/lists", json={"name": "M"}, headers=auth).json()["id"]
    resp = client.post(
        f"{base}/lists/{lst}/import",
        content=chunks_of(MULTILINE_CSV, 5),
        headers={**auth, "Content-Type": "text/csv"},
    )
    assert resp.status_code == 200, resp.text
    report: dict[str, Any] = resp.json()
    assert report["imported"] == 3 and report["failed"] == 2
    assert [e["line"] for e in report["errors"]] == [6, 10]
    contacts = client.get(f"{base}/lists/{lst}/contacts", headers=auth).json()["data"]
    by_email = {c["email"]: c for c in contacts}
    assert by_email["a@x.com"]["fields"]["notes"] == 'likes\r\nnewlines, commas\r\nand "quotes"'
    assert by_email["b@x.com"]["first_name"] == "Bo\nb"


def test_import_stops_at_an_unclosed_quote_and_keeps_the_rows_before(client: TestClient) -> None:
    auth = signup(client)
    team = client.post("/v1/teams", json={"name": "CSV"}, headers=auth).json()["id"]
    base = f"/v1/teams/{team}"
    lst = client.post(f"{base}/lists", json={"name": "U"}, headers=auth).json()["id"]
    body = b'email,first_name\nok@x.com,Ok\nbad@x.com,"Unclosed\nmore@x.com,More\n'
    report = client.post(f"{base}/lists/{lst}/import", content=body, headers=auth).json()
    assert report["imported"] == 1 and report["failed"] == 1
    assert report["errors"][0]["line"] == 3 and "not closed" in report["errors"][0]["message"]


def test_import_validates_addresses_like_the_validation_api(client: TestClient) -> None:
    """Invalid and disposable addresses are refused; role accounts and typos are imported
    with a warning (the sender may mean them)."""
    auth = signup(client)
    team = client.post("/v1/teams", json={"name": "CSV"}, headers=auth).json()["id"]
    base = f"/v1/teams/{team}"
    lst = client.post(f"{base}/lists", json={"name": "V"}, headers=auth).json()["id"]
    body = (
        b"email\nok@example.com\nx@mailinator.com\ninfo@example.com\nbob@outlok.com\nno-at-sign\n"
    )
    report = client.post(f"{base}/lists/{lst}/import", content=body, headers=auth).json()
    assert report["imported"] == 3 and report["failed"] == 2
    assert {e["line"]: e["message"] for e in report["errors"]}.keys() == {3, 6}
    assert "disposable" in report["errors"][0]["message"]
    warned = {w["line"]: w["message"] for w in report["warnings"]}
    assert report["warned"] == 2 and "role account" in warned[4]
    assert "did you mean bob@outlook.com" in warned[5]
    emails = {
        c["email"] for c in client.get(f"{base}/lists/{lst}/contacts", headers=auth).json()["data"]
    }
    assert emails == {"ok@example.com", "info@example.com", "bob@outlok.com"}


def test_suppression_api(client: TestClient) -> None:
    auth, team = _team(client)
    base = f"/v1/teams/{team}/suppressions"
    assert client.post(base, json={"email": "S@x.com"}, headers=auth).status_code == 201
    assert client.get(base, headers=auth).json()["data"] == ["s@x.com"]
    assert client.delete(f"{base}/s@x.com", headers=auth).status_code == 200
    assert client.delete(f"{base}/s@x.com", headers=auth).status_code == 404


def test_templates_render_in_a_sandbox(client: TestClient) -> None:
    auth, team = _team(client)
    base = f"/v1/teams/{team}/templates"
    broken = client.post(base, json={"name": "b", "subject": "{% if %}", "html": ""}, headers=auth)
    assert broken.status_code == 422
    tpl = client.post(
        base,
        json={"name": "w", "subject": "Hi {{ name }}", "html": "<p>{{ name }}</p>"},
        headers=auth,
    ).json()
    out = client.post(
        f"{base}/{tpl['id']}/preview", json={"variables": {"name": "<b>Ann</b>"}}, headers=auth
    ).json()
    assert out["subject"] == "Hi <b>Ann</b>" and out["html"] == "<p>&lt;b&gt;Ann&lt;/b&gt;</p>"
    evil = client.put(
        f"{base}/{tpl['id']}",
        json={"name": "e", "subject": "{{ ''.__class__.__mro__ }}"},
        headers=auth,
    )
    assert evil.status_code == 200
    refused = client.post(f"{base}/{tpl['id']}/preview", json={}, headers=auth)
    assert refused.status_code == 422 and "__class__" not in refused.json().get("subject", "")
