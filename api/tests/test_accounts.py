"""Accounts, sessions, TOTP 2FA with recovery codes, API keys, invitations, /v1/me."""

from __future__ import annotations

import uuid
from typing import Any

import pyotp
import pytest
from fastapi.testclient import TestClient

from api.tests.conftest import signup

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
    enrol = client.post("/v1/auth/2fa/enroll", headers=auth).json()
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


def test_invitations_are_signed_expiring_and_bound_to_the_invitee(client: TestClient) -> None:
    owner = signup(client)
    team = client.post("/v1/teams", json={"name": "Inv"}, headers=owner).json()
    invitee_email = _email()
    invite = client.post(
        f"/v1/teams/{team['id']}/invitations",
        json={"email": invitee_email, "role": "manager"},
        headers=owner,
    ).json()
    invitee = signup(client, invitee_email)
    stranger = signup(client)
    forged = client.post(
        "/v1/invitations/accept", json={"token": invite["token"] + "x"}, headers=invitee
    )
    assert forged.status_code == 400 and forged.json()["error"]["code"] == "invalid_token"
    wrong_user = client.post(
        "/v1/invitations/accept", json={"token": invite["token"]}, headers=stranger
    )
    assert wrong_user.status_code == 403
    assert client.get(f"/v1/teams/{team['id']}", headers=invitee).status_code == 404
    ok = client.post("/v1/invitations/accept", json={"token": invite["token"]}, headers=invitee)
    assert ok.status_code == 200 and ok.json()["role"] == "manager"
    assert client.get(f"/v1/teams/{team['id']}", headers=invitee).json()["your_role"] == "manager"
    again = client.post("/v1/invitations/accept", json={"token": invite["token"]}, headers=invitee)
    assert again.status_code == 400


def test_expired_invitation_is_refused(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    import api.routers.teams as teams_module

    owner = signup(client)
    team = client.post("/v1/teams", json={"name": "Exp"}, headers=owner).json()
    email = _email()
    monkeypatch.setattr(teams_module, "INVITE_LIFETIME", teams_module.timedelta(seconds=-1))
    token = client.post(
        f"/v1/teams/{team['id']}/invitations", json={"email": email}, headers=owner
    ).json()["token"]
    resp = client.post(
        "/v1/invitations/accept", json={"token": token}, headers=signup(client, email)
    )
    assert resp.status_code == 400


def test_last_administrator_cannot_leave(client: TestClient) -> None:
    owner = signup(client)
    team = client.post("/v1/teams", json={"name": "Adm"}, headers=owner).json()
    me = client.get("/v1/me", headers=owner).json()
    resp = client.delete(f"/v1/teams/{team['id']}/members/{me['id']}", headers=owner)
    assert resp.status_code == 409
