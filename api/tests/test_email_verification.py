"""Sign-up verifies the address before the team can send: the mailed link is the only way
in, and until it is used the team's API sends (fast path included), SMTP credentials and
broadcast launches are refused with 403 email_not_verified and nothing is queued."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

import api.services.email_verification as verification
from api.services.domains import generate_keys
from api.services.security import sha256_hex
from api.tests.mailbox import link_in, queued_messages
from kibamail.redis_keys import RedisKeys

pytestmark = pytest.mark.integration

PASSWORD = "long enough pw"
VERIFY_PATH = "/v1/auth/verify-email"


def _signup(client: TestClient) -> tuple[str, dict[str, str], dict[str, Any]]:
    email = f"v-{uuid.uuid4().hex[:10]}@example.com"
    resp = client.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    assert resp.status_code == 201, resp.text
    return email, {"Authorization": f"Bearer {resp.json()['token']}"}, resp.json()


def _link(redis: Any, email: str) -> str:
    mails = queued_messages(redis, email)
    assert len(mails) == 1, f"expected one verification email to {email}, got {len(mails)}"
    return link_in(mails[0][1], VERIFY_PATH)


class SendingSetup:
    """A team of an unverified account, with a verified domain, a list, a broadcast draft
    and a full API key: everything but the verified address."""

    def __init__(self, client: TestClient, auth: dict[str, str]) -> None:
        self.client = client
        self.team = client.post("/v1/teams", json={"name": "V"}, headers=auth).json()["id"]
        self.base = f"/v1/teams/{self.team}"
        domain = generate_keys(f"v{uuid.uuid4().hex[:8]}.example.com", self.team)
        domain.status = "verified"
        with client.app.state.km.sessions.begin() as db:  # type: ignore[attr-defined]
            db.add(domain)
        self.domain = domain.name
        key = client.post(f"{self.base}/api-keys", json={"name": "k"}, headers=auth)
        assert key.status_code == 201, key.text
        self.key_hash = sha256_hex(key.json()["key"])
        self.key = {"Authorization": f"Bearer {key.json()['key']}"}
        list_id = client.post(f"{self.base}/lists", json={"name": "L"}, headers=auth).json()["id"]
        client.post(
            f"{self.base}/lists/{list_id}/contacts", json={"email": "c@x.com"}, headers=auth
        )
        body = {
            "name": "b",
            "list_id": list_id,
            "from": f"n@{self.domain}",
            "variants": [{"subject": "s", "text": "t"}],
        }
        self.broadcast = client.post(f"{self.base}/broadcasts", json=body, headers=auth).json()[
            "id"
        ]
        self.recipient = f"r-{uuid.uuid4().hex[:8]}@x.com"

    def email(self) -> dict[str, Any]:
        return {"from": f"n@{self.domain}", "to": [self.recipient], "subject": "s", "text": "t"}


def _not_verified(resp: Any) -> None:
    assert resp.status_code == 403, resp.text
    error = resp.json()["error"]
    assert error["code"] == "email_not_verified" and "verify" in error["message"]


def test_signup_mails_a_link_and_the_team_cannot_send_until_it_is_used(
    client: TestClient, redis_client: Any, api_settings: Any
) -> None:
    email, auth, body = _signup(client)
    assert body["user"]["email_verified"] is False and body["verification_email_sent"] is True
    assert "token" in body and VERIFY_PATH not in str(body)  # the link is only mailed
    message, _parsed = queued_messages(redis_client, email)[0]
    assert message.team_id == api_settings.notifications.team_id
    link = _link(redis_client, email)
    setup = SendingSetup(client, auth)
    c = client

    _not_verified(c.post("/v1/emails", json=setup.email(), headers=setup.key))
    _not_verified(c.post("/v1/emails/batch", json=[setup.email()], headers=setup.key))
    _not_verified(c.post(f"{setup.base}/smtp-credentials", headers=auth))
    _not_verified(c.post(f"{setup.base}/smtp-credentials", headers=setup.key))
    launch = f"{setup.base}/broadcasts/{setup.broadcast}/launch"
    _not_verified(c.post(launch, json={}, headers=auth))
    # Nothing changed: no mail queued, no credential, the draft is a draft, and the key
    # has no Redis record (the send fast path serves only keys that have one).
    assert queued_messages(redis_client, setup.recipient) == []
    assert c.get(f"{setup.base}/smtp-credentials", headers=auth).json()["data"] == []
    draft = c.get(f"{setup.base}/broadcasts/{setup.broadcast}", headers=auth).json()
    assert draft["status"] == "draft"
    assert not redis_client.exists(RedisKeys.api_key(setup.team, setup.key_hash))
    assert c.get("/v1/me", headers=auth).json()["email_verified"] is False

    shown = c.get(link)  # what a mail scanner's prefetch does: nothing changes
    assert shown.status_code == 200 and shown.json() == {
        "email": email,
        "email_verified": False,
        "verify": shown.json()["verify"],
    }
    _not_verified(c.post("/v1/emails", json=setup.email(), headers=setup.key))

    verified = c.post(link)
    assert verified.status_code == 200 and verified.json()["email_verified"] is True
    assert c.get("/v1/me", headers=auth).json()["email_verified"] is True
    sent = c.post("/v1/emails", json=setup.email(), headers=setup.key)
    assert sent.status_code == 200 and sent.json()["status"] == "queued"
    assert len(queued_messages(redis_client, setup.recipient)) == 1
    assert c.post(f"{setup.base}/smtp-credentials", headers=setup.key).status_code == 201
    assert c.post(launch, json={}, headers=auth).status_code == 200
    assert c.post(link).status_code == 200  # using the link again is harmless


def test_forged_and_expired_links_verify_nothing(
    client: TestClient, redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    email, auth, _body = _signup(client)
    link = _link(redis_client, email)
    token = link.split("token=", 1)[1]
    other_email, other_auth, _ = _signup(client)
    for forged in (token[:-2] + "xx", token + "x", "x" * 40):
        resp = client.post(VERIFY_PATH, json={"token": forged})
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_token"
        assert client.get(f"{VERIFY_PATH}?token={forged}").status_code == 400
    # A token made for another address (the same user id, another email) is refused.
    signer = client.app.state.km.signer  # type: ignore[attr-defined]
    user_id = client.get("/v1/me", headers=auth).json()["id"]
    swapped = signer.dumps_timed(
        verification.VERIFY_PURPOSE, {"user": user_id, "email": other_email}
    )
    assert client.post(VERIFY_PATH, json={"token": swapped}).status_code == 400
    monkeypatch.setattr(verification, "VERIFY_LIFETIME", verification.timedelta(seconds=-1))
    expired = client.post(link)
    assert expired.status_code == 400 and expired.json()["error"]["code"] == "invalid_token"
    for headers in (auth, other_auth):
        assert client.get("/v1/me", headers=headers).json()["email_verified"] is False


def test_resend_mails_again_at_most_once_per_interval(
    client: TestClient, redis_client: Any
) -> None:
    email, auth, _body = _signup(client)
    first = client.post(f"{VERIFY_PATH}/resend", headers=auth)
    assert first.status_code == 200 and first.json()["email_sent"] is True
    again = client.post(f"{VERIFY_PATH}/resend", headers=auth)
    assert again.status_code == 200 and again.json()["email_sent"] is False
    mails = queued_messages(redis_client, email)
    assert len(mails) == 2
    client.post(link_in(mails[-1][1], VERIFY_PATH))
    done = client.post(f"{VERIFY_PATH}/resend", headers=auth)
    assert done.status_code == 409 and done.json()["error"]["code"] == "already_verified"


def test_verifying_another_account_does_not_unlock_this_team(
    client: TestClient, redis_client: Any
) -> None:
    """The team's creator must verify: a verified member the attacker invites in does not
    make the unverified creator's team a sender."""
    _email, auth, _body = _signup(client)
    setup = SendingSetup(client, auth)
    helper_email, helper_auth, _ = _signup(client)
    client.post(_link(redis_client, helper_email))
    me = client.get("/v1/me", headers=helper_auth).json()["id"]
    from api.models import Membership

    with client.app.state.km.sessions.begin() as db:  # type: ignore[attr-defined]
        db.add(Membership(team_id=setup.team, user_id=me, role="administrator"))
    launch = f"{setup.base}/broadcasts/{setup.broadcast}/launch"
    _not_verified(client.post(launch, json={}, headers=helper_auth))
    _not_verified(client.post(f"{setup.base}/smtp-credentials", headers=helper_auth))
    _not_verified(client.post("/v1/emails", json=setup.email(), headers=setup.key))
    assert queued_messages(redis_client, setup.recipient) == []
