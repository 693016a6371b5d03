"""Every team endpoint x every role (allowed -> 2xx, denied -> 403), the same for API keys
of every scope and every ceiling role (a key may do what the lower of its creator's role
and its scope allows), and every resource across teams (another team's id -> 404), on
SQLite and on MariaDB."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.db import migrate
from api.models import Membership
from api.services.domains import generate_keys
from api.tests.conftest import RecordingProducer, signup
from kibamail.settings import Settings

pytestmark = pytest.mark.integration

ALL = {"administrator", "manager", "author", "guest"}
EDITORS = {"administrator", "manager", "author"}
MANAGERS = {"administrator", "manager"}
ADMINS = {"administrator"}


@dataclass
class World:
    """One team with a member per role and one resource of each kind."""

    client: TestClient
    team: str
    auth: dict[str, dict[str, str]]
    ids: dict[str, str] = field(default_factory=dict)

    def admin(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        resp = self.client.request(method, path, headers=self.auth["administrator"], **kw)
        assert resp.status_code < 300, (path, resp.text)
        return dict(resp.json())

    def member(self, role: str) -> str:
        """A fresh member with `role`, to be changed or removed."""
        headers = signup(self.client)
        user_id = self.client.get("/v1/me", headers=headers).json()["id"]
        with self.client.app.state.km.sessions.begin() as db:  # type: ignore[attr-defined]
            db.add(Membership(team_id=self.team, user_id=user_id, role=role))
        return user_id


def build_world(client: TestClient) -> World:
    owner = signup(client)
    team = client.post("/v1/teams", json={"name": "Matrix"}, headers=owner).json()["id"]
    world = World(client, team, {"administrator": owner})
    for role in ("manager", "author", "guest"):
        headers = signup(client)
        user_id = client.get("/v1/me", headers=headers).json()["id"]
        with client.app.state.km.sessions.begin() as db:  # type: ignore[attr-defined]
            db.add(Membership(team_id=team, user_id=user_id, role=role))
        world.auth[role] = headers
    state = client.app.state.km  # type: ignore[attr-defined]
    domain = generate_keys(f"m{uuid.uuid4().hex[:8]}.example.com", team)
    domain.status = "verified"
    with state.sessions.begin() as db:
        db.add(domain)
    world.ids["domain"] = domain.id
    world.ids["domain_name"] = domain.name
    base = f"/v1/teams/{team}"
    world.ids["list"] = world.admin("POST", f"{base}/lists", json={"name": "L"})["id"]
    world.ids["contact"] = world.admin(
        "POST", f"{base}/lists/{world.ids['list']}/contacts", json={"email": "c@x.com"}
    )["id"]
    world.ids["template"] = world.admin(
        "POST", f"{base}/templates", json={"name": "t", "subject": "s", "text": "x"}
    )["id"]
    world.ids["broadcast"] = new_broadcast(world)
    world.ids["key"] = world.admin("POST", f"{base}/api-keys", json={"name": "k"})["id"]
    return world


def new_broadcast(w: World) -> str:
    body = {
        "name": "b",
        "list_id": w.ids["list"],
        "from": f"n@{w.ids['domain_name']}",
        "variants": [{"subject": "s", "text": "t"}],
    }
    return str(w.admin("POST", f"/v1/teams/{w.team}/broadcasts", json=body)["id"])


def launched(w: World, pause: bool = False) -> str:
    broadcast = new_broadcast(w)
    w.admin("POST", f"/v1/teams/{w.team}/broadcasts/{broadcast}/launch", json={})
    if pause:
        w.admin("POST", f"/v1/teams/{w.team}/broadcasts/{broadcast}/pause")
    return broadcast


Request = tuple[str, str, dict[str, Any]]
Case = Callable[[World], Request]
T = "/v1/teams/{team}"


def _p(w: World, path: str) -> str:
    return path.format(team=f"/v1/teams/{w.team}", **w.ids)


def simple(method: str, path: str, body: Any = None, **kw: Any) -> Case:
    def case(w: World) -> Request:
        extra = {"json": body} if body is not None else {}
        return method, _p(w, path), {**extra, **kw}

    return case


def fresh(method: str, path: str, make: Callable[[World], str], body: Any = None) -> Case:
    def case(w: World) -> Request:
        extra = {"json": body} if body is not None else {}
        return method, path.format(team=f"/v1/teams/{w.team}", new=make(w), **w.ids), extra

    return case


def _new_contact(w: World) -> str:
    body = {"email": f"{uuid.uuid4().hex[:8]}@x.com"}
    return str(w.admin("POST", _p(w, "{team}/lists/{list}/contacts"), json=body)["id"])


def _new_list(w: World) -> str:
    return str(w.admin("POST", _p(w, "{team}/lists"), json={"name": "x"})["id"])


def _new_template(w: World) -> str:
    body = {"name": "t", "subject": "s", "text": "x"}
    return str(w.admin("POST", _p(w, "{team}/templates"), json=body)["id"])


def _new_key(w: World) -> str:
    return str(w.admin("POST", _p(w, "{team}/api-keys"), json={"name": "x"})["id"])


def _new_smtp(w: World) -> str:
    return str(w.admin("POST", _p(w, "{team}/smtp-credentials"))["username"])


def _new_suppression(w: World) -> str:
    email = f"{uuid.uuid4().hex[:8]}@x.com"
    w.admin("POST", _p(w, "{team}/suppressions"), json={"email": email})
    return email


def _new_domain(w: World) -> str:
    name = f"d{uuid.uuid4().hex[:8]}.example.com"
    return str(w.admin("POST", _p(w, "{team}/domains"), json={"name": name})["id"])


BROADCAST_BODY = {"name": "e", "list_id": "{list}", "variants": [{"subject": "s", "text": "t"}]}


def _broadcast_edit(w: World) -> Request:
    body = {**BROADCAST_BODY, "list_id": w.ids["list"], "from": f"n@{w.ids['domain_name']}"}
    return "PUT", _p(w, "{team}/broadcasts/{broadcast}"), {"json": body}


MATRIX: list[tuple[str, Case, set[str]]] = [
    ("team", simple("GET", "{team}"), ALL),
    ("members", simple("GET", "{team}/members"), ALL),
    (
        "role",
        fresh("PATCH", "{team}/members/{new}", lambda w: w.member("author"), {"role": "guest"}),
        MANAGERS,
    ),
    ("remove", fresh("DELETE", "{team}/members/{new}", lambda w: w.member("guest")), MANAGERS),
    (
        "invite",
        simple("POST", "{team}/invitations", {"email": "i@x.com", "role": "author"}),
        MANAGERS,
    ),
    ("keys", simple("GET", "{team}/api-keys"), MANAGERS),
    ("key+", simple("POST", "{team}/api-keys", {"name": "n"}), MANAGERS),
    ("key-", fresh("DELETE", "{team}/api-keys/{new}", _new_key), MANAGERS),
    ("smtp", simple("GET", "{team}/smtp-credentials"), MANAGERS),
    ("smtp+", simple("POST", "{team}/smtp-credentials"), MANAGERS),
    ("smtp-", fresh("DELETE", "{team}/smtp-credentials/{new}", _new_smtp), MANAGERS),
    ("domains", simple("GET", "{team}/domains"), ADMINS),
    ("domain", simple("GET", "{team}/domains/{domain}"), ADMINS),
    (
        "domain+",
        lambda w: (
            "POST",
            _p(w, "{team}/domains"),
            {"json": {"name": f"n{uuid.uuid4().hex[:6]}.example.com"}},
        ),
        ADMINS,
    ),
    ("domain-", fresh("DELETE", "{team}/domains/{new}", _new_domain), ADMINS),
    ("lists", simple("GET", "{team}/lists"), EDITORS),
    ("list+", simple("POST", "{team}/lists", {"name": "n"}), EDITORS),
    ("list-", fresh("DELETE", "{team}/lists/{new}", _new_list), EDITORS),
    ("fields", simple("GET", "{team}/fields"), EDITORS),
    (
        "field+",
        lambda w: ("POST", _p(w, "{team}/fields"), {"json": {"name": f"f{uuid.uuid4().hex[:6]}"}}),
        EDITORS,
    ),
    ("contacts", simple("GET", "{team}/lists/{list}/contacts"), EDITORS),
    ("contact", simple("GET", "{team}/contacts/{contact}"), EDITORS),
    (
        "contact+",
        lambda w: (
            "POST",
            _p(w, "{team}/lists/{list}/contacts"),
            {"json": {"email": f"{uuid.uuid4().hex[:6]}@x.com"}},
        ),
        EDITORS,
    ),
    ("contact~", simple("PATCH", "{team}/contacts/{contact}", {"first_name": "A"}), EDITORS),
    ("contact-", fresh("DELETE", "{team}/contacts/{new}", _new_contact), EDITORS),
    (
        "import",
        simple("POST", "{team}/lists/{list}/import", content=b"email\nimp@x.com\n"),
        EDITORS,
    ),
    ("suppressions", simple("GET", "{team}/suppressions"), EDITORS),
    ("suppress", simple("POST", "{team}/suppressions", {"email": "s@x.com"}), EDITORS),
    ("unsuppress", fresh("DELETE", "{team}/suppressions/{new}", _new_suppression), EDITORS),
    ("templates", simple("GET", "{team}/templates"), ALL),
    ("template", simple("GET", "{team}/templates/{template}"), ALL),
    ("template+", simple("POST", "{team}/templates", {"name": "t", "subject": "s"}), EDITORS),
    (
        "template~",
        simple("PUT", "{team}/templates/{template}", {"name": "t", "subject": "s2"}),
        EDITORS,
    ),
    ("template-", fresh("DELETE", "{team}/templates/{new}", _new_template), EDITORS),
    ("preview", simple("POST", "{team}/templates/{template}/preview", {}), ALL),
    ("broadcasts", simple("GET", "{team}/broadcasts"), ALL),
    ("broadcast", simple("GET", "{team}/broadcasts/{broadcast}"), ALL),
    (
        "broadcast+",
        lambda w: (
            "POST",
            _p(w, "{team}/broadcasts"),
            {
                "json": {
                    **BROADCAST_BODY,
                    "list_id": w.ids["list"],
                    "from": f"n@{w.ids['domain_name']}",
                }
            },
        ),
        EDITORS,
    ),
    ("broadcast~", _broadcast_edit, EDITORS),
    ("broadcast-", fresh("DELETE", "{team}/broadcasts/{new}", new_broadcast), EDITORS),
    ("launch", fresh("POST", "{team}/broadcasts/{new}/launch", new_broadcast, {}), MANAGERS),
    ("pause", fresh("POST", "{team}/broadcasts/{new}/pause", launched), MANAGERS),
    (
        "resume",
        fresh("POST", "{team}/broadcasts/{new}/resume", lambda w: launched(w, True)),
        MANAGERS,
    ),
    ("cancel", fresh("POST", "{team}/broadcasts/{new}/cancel", new_broadcast), MANAGERS),
]

RESOURCE_PATHS = [
    ("GET", "{team}/domains/{domain}"),
    ("DELETE", "{team}/domains/{domain}"),
    ("GET", "{team}/lists/{list}/contacts"),
    ("DELETE", "{team}/lists/{list}"),
    ("GET", "{team}/contacts/{contact}"),
    ("PATCH", "{team}/contacts/{contact}"),
    ("DELETE", "{team}/contacts/{contact}"),
    ("GET", "{team}/templates/{template}"),
    ("DELETE", "{team}/templates/{template}"),
    ("GET", "{team}/broadcasts/{broadcast}"),
    ("POST", "{team}/broadcasts/{broadcast}/launch"),
    ("DELETE", "{team}/api-keys/{key}"),
]


def _send(w: World) -> Request:
    body = {"from": f"n@{w.ids['domain_name']}", "to": ["r@x.com"], "subject": "s", "text": "t"}
    return "POST", "/v1/emails", {"json": body}


# Sending is by API key only (a session has no team on /v1/emails).
KEY_ONLY: list[tuple[str, Case, set[str]]] = [("send", _send, MANAGERS)]
SCOPES = ("full", "sending")


def mint_keys(w: World) -> dict[tuple[str, str], dict[str, str]]:
    """(ceiling role, scope) -> Authorization header. Managers and Administrators mint
    their own; Authors and Guests may not mint keys, so an Administrator mints keys
    limited to their roles (`role`)."""
    keys = {}
    for role in sorted(ALL):
        for scope in SCOPES:
            minter = role if role in MANAGERS else "administrator"
            body = {"name": f"{role}-{scope}", "scope": scope}
            if minter != role:
                body["role"] = role
            resp = w.client.post(f"/v1/teams/{w.team}/api-keys", json=body, headers=w.auth[minter])
            assert resp.status_code == 201 and resp.json()["role"] == role, resp.text
            keys[role, scope] = {"Authorization": f"Bearer {resp.json()['key']}"}
    return keys


@pytest.fixture(scope="module", params=["sqlite", "mariadb"])
def backend(request: pytest.FixtureRequest, api_settings: Settings) -> Iterator[TestClient]:
    settings = api_settings
    if request.param == "mariadb":
        url = request.getfixturevalue("mariadb_url")
        migrate(url)
        settings = api_settings.model_copy(
            update={"database": api_settings.database.model_copy(update={"url": url})}
        )
    unlimited = settings.api.model_copy(
        update={"rate_limit_per_second": 100_000, "rate_limit_burst": 100_000}
    )
    settings = settings.model_copy(update={"api": unlimited})
    app = create_app(settings, producer=RecordingProducer(), run_scheduler=False)
    with TestClient(app) as client:
        yield client


def test_every_endpoint_for_every_role(backend: TestClient) -> None:
    world = build_world(backend)
    failures = []
    for name, case, allowed in MATRIX:
        for role in sorted(ALL):
            method, path, kwargs = case(world)
            resp = backend.request(method, path, headers=world.auth[role], **kwargs)
            ok = 200 <= resp.status_code < 300 if role in allowed else resp.status_code == 403
            if not ok:
                failures.append(f"{name} as {role}: {resp.status_code} {resp.text[:120]}")
    assert failures == []


def test_every_endpoint_for_every_api_key(backend: TestClient) -> None:
    world = build_world(backend)
    keys = mint_keys(world)
    failures = []
    for name, case, allowed in MATRIX + KEY_ONLY:
        for (role, scope), headers in sorted(keys.items()):
            method, path, kwargs = case(world)
            resp = backend.request(method, path, headers=headers, **kwargs)
            may = role in allowed and (scope == "full" or name == "send")
            ok = 200 <= resp.status_code < 300 if may else resp.status_code == 403
            if not ok:
                failures.append(
                    f"{name} as {scope} key of {role}: {resp.status_code} {resp.text[:120]}"
                )
    assert failures == []


def test_no_endpoint_reaches_another_team(backend: TestClient) -> None:
    victim = build_world(backend)
    attacker = build_world(backend)
    failures = []
    # 1. The victim's team id in the path: the attacker is no member -> 404.
    for name, case, _allowed in MATRIX:
        method, path, kwargs = case(victim)
        resp = backend.request(method, path, headers=attacker.auth["administrator"], **kwargs)
        if resp.status_code != 404:
            failures.append(f"{name}: {resp.status_code}")
    # 2. The attacker's own team id with the victim's resource ids -> 404, never data.
    for method, template in RESOURCE_PATHS:
        path = template.format(team=f"/v1/teams/{attacker.team}", **victim.ids)
        body: dict[str, Any] = {"json": {}} if method in {"POST", "PATCH"} else {}
        resp = backend.request(method, path, headers=attacker.auth["administrator"], **body)
        if resp.status_code != 404:
            failures.append(f"{method} {template}: {resp.status_code}")
    # 3. The attacker's Administrator API key on the victim's team -> 404.
    key = attacker.admin("POST", f"/v1/teams/{attacker.team}/api-keys", json={"name": "a"})
    for name, case, _allowed in MATRIX:
        method, path, kwargs = case(victim)
        resp = backend.request(
            method, path, headers={"Authorization": f"Bearer {key['key']}"}, **kwargs
        )
        if resp.status_code != 404:
            failures.append(f"{name} with a key: {resp.status_code}")
    assert failures == []
    # Nothing of the victim's changed.
    contact = backend.get(
        f"/v1/teams/{victim.team}/contacts/{victim.ids['contact']}",
        headers=victim.auth["administrator"],
    )
    assert contact.status_code == 200 and contact.json()["first_name"] == ""
