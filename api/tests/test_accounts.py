"""Accounts, sessions, TOTP 2FA with recovery codes, API keys, invitations, /v1/me."""

from __future__ import annotations

import uuid
from typing import Any

import pyotp
import pytest
from fastapi.testclient import TestClient

from api.services.notifications import INVITE_SUBJECT
from api.tests.conftest import signup
from api.tests.mailbox import link_in, queued_messages

pytestmark = pytest.mark.integration

PASSWORD = "long enough pw"


def _email() -> str:
    return f"a-{uuid.uuid4().hex[:10]}@example.com"


def test_signup_login_and_me_lists_teams_with_roles(client: TestClient) -> None:
    email = _email()
    auth = signup(client, email)
    assert (
        client.post("/v1/auth/signup", json={"email": email, "password": PASSWORD}).status_code
        == 409
    )
    assert (
        client.post("/v1/auth/login", json={"email": email, "password": "wrong pw!!"}).status_code
        == 401
    )
    login = client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200 and login.json()["token"].startswith("kms_")
    first = client.post("/v1/teams", json={"name": "One"}, headers=auth).json()
    second = client.post("/v1/teams", json={"name": "Two"}, headers=auth).json()
    me = client.get("/v1/me", headers=auth).json()
    assert me["email"] == email
    assert {(t["id"], t["role"]) for t in me["teams"]} == {
        (first["id"], "administrator"),
        (second["id"], "administrator"),
    }
    assert client.get("/v1/me").status_code == 401


def test_totp_is_required_at_login_once_enabled_and_recovery_codes_work_once(
    client: TestClient,
) -> None:
    email = _email()
    auth = signup(client, email)
    enrol = client.post("/v1/auth/2fa/enroll", json={"password": PASSWORD}, headers=auth).json()
    assert enrol["otpauth_uri"].startswith("otpauth://totp/")
    totp = pyotp.TOTP(enrol["secret"])
    assert (
        client.post("/v1/auth/2fa/verify", json={"code": "000000"}, headers=auth).status_code == 422
    )
    done = client.post("/v1/auth/2fa/verify", json={"code": totp.now()}, headers=auth).json()
    codes = done["recovery_codes"]
    assert done["enabled"] and len(codes) == 10
    creds = {"email": email, "password": PASSWORD}
    missing = client.post("/v1/auth/login", json=creds)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "totp_required"
    wrong = client.post("/v1/auth/login", json={**creds, "totp_code": "123456"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_totp"
    assert client.post("/v1/auth/login", json={**creds, "totp_code": totp.now()}).status_code == 200
    assert (
        client.post("/v1/auth/login", json={**creds, "recovery_code": codes[0]}).status_code == 200
    )
    reused = client.post("/v1/auth/login", json={**creds, "recovery_code": codes[0]})
    assert reused.status_code == 401


def test_api_keys_shown_once_scoped_revocable_with_last_used(
    client: TestClient, redis_client: Any
) -> None:
    auth = signup(client)
    team = client.post("/v1/teams", json={"name": "Keys"}, headers=auth).json()
    base = f"/v1/teams/{team['id']}/api-keys"
    sending = client.post(base, json={"name": "s", "scope": "sending"}, headers=auth).json()
    full = client.post(base, json={"name": "f"}, headers=auth).json()
    assert sending["key"].startswith("km_") and full["scope"] == "full"
    listed = client.get(base, headers=auth).json()["data"]
    assert all("key" not in k for k in listed) and len(listed) == 2
    key_auth = {"Authorization": f"Bearer {sending['key']}"}
    # A sending key may not manage keys; a full key may (its own team only).
    assert client.get(base, headers=key_auth).status_code == 403
    full_auth = {"Authorization": f"Bearer {full['key']}"}
    used = client.get(base, headers=full_auth).json()["data"]
    assert any(k["id"] == full["id"] and k["last_used_at"] for k in used)
    assert client.delete(f"{base}/{full['id']}", headers=auth).status_code == 200
    resp = client.get(base, headers=full_auth)
    assert resp.status_code == 401


def _invitation_link(redis_client: Any, email: str) -> str:
    mails = queued_messages(redis_client, email)
    assert len(mails) == 1, f"expected one invitation email to {email}, got {len(mails)}"
    return link_in(mails[0][1], "/v1/invitations/accept")


def test_invitation_is_mailed_once_and_its_link_joins_the_team(
    client: TestClient, redis_client: Any, api_settings: Any
) -> None:
    owner = signup(client)
    team = client.post("/v1/teams", json={"name": "Inv"}, headers=owner).json()
    invitee_email = _email()
    body = {"email": invitee_email, "role": "manager"}
    invite = client.post(f"/v1/teams/{team['id']}/invitations", json=body, headers=owner)
    assert invite.status_code == 201 and invite.json()["email_sent"] is True
    assert "token" not in invite.json() and "accept_url" not in invite.json()
    retried = client.post(f"/v1/teams/{team['id']}/invitations", json=body, headers=owner)
    assert retried.json()["id"] == invite.json()["id"] and retried.json()["email_sent"] is False
    message, parsed = queued_messages(redis_client, invitee_email)[0]
    assert message.team_id == api_settings.notifications.team_id  # platform mail, not billed
    assert parsed["To"] == invitee_email and parsed["Subject"] == INVITE_SUBJECT
    assert "'Inv'" in parsed.get_body(preferencelist=("plain",)).get_content()
    link = _invitation_link(redis_client, invitee_email)
    offer = client.get(link)
    assert offer.status_code == 200 and offer.json()["role"] == "manager"
    invitee = signup(client, invitee_email)
    assert client.get(f"/v1/teams/{team['id']}", headers=invitee).status_code == 404
    ok = client.post(link, headers=invitee)
    assert ok.status_code == 200 and ok.json()["role"] == "manager"
    assert client.get(f"/v1/teams/{team['id']}", headers=invitee).json()["your_role"] == "manager"
    assert client.post(link, headers=invitee).status_code == 400
    assert client.get(link).status_code == 400


def test_invitations_are_signed_and_bound_to_the_invitee(
    client: TestClient, redis_client: Any
) -> None:
    owner = signup(client)
    team = client.post("/v1/teams", json={"name": "Inv"}, headers=owner).json()
    invitee_email = _email()
    client.post(
        f"/v1/teams/{team['id']}/invitations",
        json={"email": invitee_email, "role": "author"},
        headers=owner,
    )
    link = _invitation_link(redis_client, invitee_email)
    token = link.split("token=", 1)[1]
    invitee = signup(client, invitee_email)
    stranger = signup(client)
    forged = client.post("/v1/invitations/accept", json={"token": token + "x"}, headers=invitee)
    assert forged.status_code == 400 and forged.json()["error"]["code"] == "invalid_token"
    assert client.get(link + "x").status_code == 400
    wrong_user = client.post(link, headers=stranger)
    assert wrong_user.status_code == 403
    assert client.get(f"/v1/teams/{team['id']}", headers=invitee).status_code == 404
    assert client.get(f"/v1/teams/{team['id']}", headers=stranger).status_code == 404
    ok = client.post("/v1/invitations/accept", json={"token": token}, headers=invitee)
    assert ok.status_code == 200 and ok.json()["role"] == "author"


def test_expired_invitation_is_refused_without_state_change(
    client: TestClient, redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import api.routers.teams as teams_module

    owner = signup(client)
    team = client.post("/v1/teams", json={"name": "Exp"}, headers=owner).json()
    email = _email()
    monkeypatch.setattr(teams_module, "INVITE_LIFETIME", teams_module.timedelta(seconds=-1))
    client.post(f"/v1/teams/{team['id']}/invitations", json={"email": email}, headers=owner)
    link = _invitation_link(redis_client, email)
    invitee = signup(client, email)
    assert client.get(link).status_code == 400
    assert client.post(link, headers=invitee).status_code == 400
    assert client.get(f"/v1/teams/{team['id']}", headers=invitee).status_code == 404


def test_last_administrator_cannot_leave(client: TestClient) -> None:
    owner = signup(client)
    team = client.post("/v1/teams", json={"name": "Adm"}, headers=owner).json()
    me = client.get("/v1/me", headers=owner).json()
    resp = client.delete(f"/v1/teams/{team['id']}/members/{me['id']}", headers=owner)
    assert resp.status_code == 409
