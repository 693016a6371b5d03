"""Login and 2FA hardening, played by an attacker: password guessing per account and per
IP (429 + Retry-After, even with the right password), second-factor guessing, TOTP replay,
the dummy hash for unknown addresses, and the password needed to turn 2FA on or off."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

import api.routers.auth as auth_module
from api.models import RecoveryCode, User, UserSession
from api.services import login_guard
from api.services.security import dummy_password_hash, hash_password
from api.tests.conftest import signup
from kibamail.redis_keys import RedisKeys

pytestmark = pytest.mark.integration

PASSWORD = "long enough pw"


def _from_ip(client: TestClient, ip: str | None = None) -> TestClient:
    """The same app seen from a fresh client IP: counters of other tests never meet ours."""
    ip = ip or f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    return TestClient(client.app, client=(ip, 40000))


def _email() -> str:
    return f"l-{uuid.uuid4().hex[:10]}@example.com"


def _login(client: TestClient, email: str, password: str = PASSWORD, **extra: str) -> Any:
    return client.post("/v1/auth/login", json={"email": email, "password": password, **extra})


def _assert_locked(resp: Any, window: int) -> None:
    assert resp.status_code == 429, resp.text
    assert resp.json()["error"]["code"] == "too_many_attempts"
    assert 0 < int(resp.headers["Retry-After"]) <= window


def _wrong_code(secret: str) -> str:
    """A well-formed code valid in no accepted step."""
    totp, now = pyotp.TOTP(secret), time.time()
    valid = {totp.at(now + delta) for delta in (-60, -30, 0, 30, 60)}
    return next(c for c in (f"{n:06d}" for n in range(1000)) if c not in valid)


def test_an_account_locks_after_five_wrong_passwords_even_for_the_right_one(
    client: TestClient,
) -> None:
    attacker, owner = _from_ip(client), _from_ip(client)
    email = _email()
    signup(client, email)
    for _ in range(login_guard.PASSWORD_ACCOUNT.attempts):
        assert _login(attacker, email, "wrong password!").status_code == 401
    _assert_locked(_login(attacker, email), login_guard.PASSWORD_ACCOUNT.window_seconds)
    # The account is locked from everywhere (the guesser may rotate IPs).
    _assert_locked(_login(owner, email), login_guard.PASSWORD_ACCOUNT.window_seconds)
    # Other accounts on the attacker's IP are not.
    other = _email()
    signup(client, other)
    assert _login(attacker, other).status_code == 200


def test_an_unknown_address_locks_the_same_way(client: TestClient) -> None:
    attacker = _from_ip(client)
    email = _email()  # no account
    for _ in range(login_guard.PASSWORD_ACCOUNT.attempts):
        resp = _login(attacker, email, "whatever pw")
        assert resp.status_code == 401 and resp.json()["error"]["message"] == (
            "wrong email or password"
        )
    _assert_locked(_login(attacker, email), login_guard.PASSWORD_ACCOUNT.window_seconds)


def test_an_ip_locks_after_failures_over_many_addresses(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = login_guard.Limit("password-ip", 4, 900)
    monkeypatch.setattr(login_guard, "PASSWORD_IP", limit)
    attacker, elsewhere = _from_ip(client), _from_ip(client)
    for _ in range(limit.attempts):  # one guess per address: no account lock is reached
        assert _login(attacker, _email(), "guess pw").status_code == 401
    email = _email()
    signup(client, email)
    _assert_locked(_login(attacker, email), limit.window_seconds)
    assert _login(elsewhere, email).status_code == 200


def test_a_success_clears_the_account_counter_but_never_the_ip_counter(
    client: TestClient, redis_client: Any
) -> None:
    address = f"192.0.2.{uuid.uuid4().int % 250}"
    me = _from_ip(client, address)
    email = _email()
    signup(client, email)
    redis_client.delete(RedisKeys.login_failures("password-ip", address))
    assert _login(me, email, "typo typo typo").status_code == 401
    assert _login(me, email).status_code == 200
    account = RedisKeys.login_failures("password-account", login_guard.account_subject(email))
    ip = RedisKeys.login_failures("password-ip", address)
    assert not redis_client.exists(account)
    assert redis_client.get(ip) == b"1"


def _with_totp(client: TestClient) -> tuple[str, pyotp.TOTP, list[str]]:
    email = _email()
    auth = signup(client, email)
    enrol = client.post("/v1/auth/2fa/enroll", json={"password": PASSWORD}, headers=auth).json()
    totp = pyotp.TOTP(enrol["secret"])
    done = client.post("/v1/auth/2fa/verify", json={"code": totp.now()}, headers=auth).json()
    return email, totp, done["recovery_codes"]


def test_second_factor_guessing_locks_the_account(client: TestClient) -> None:
    attacker = _from_ip(client)  # knows the password, guesses codes
    email, totp, codes = _with_totp(client)
    wrong = _wrong_code(totp.secret)
    for _ in range(login_guard.SECOND_FACTOR_ACCOUNT.attempts):
        resp = _login(attacker, email, totp_code=wrong)
        assert resp.status_code == 401 and resp.json()["error"]["code"] == "invalid_totp"
    window = login_guard.SECOND_FACTOR_ACCOUNT.window_seconds
    _assert_locked(_login(attacker, email, totp_code=totp.now()), window)
    _assert_locked(_login(attacker, email, recovery_code=codes[0]), window)
    assert _login(_from_ip(client), email, recovery_code="nope-nope").status_code == 429
    # Refused attempts spent no recovery code and opened no session.
    with client.app.state.km.sessions() as db:  # type: ignore[attr-defined]
        user = db.scalar(select(User).where(User.email == email))
        assert user is not None
        rows = db.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user.id)).all()
        assert len(rows) == 10 and all(row.used_at is None for row in rows)
        sessions = db.scalars(select(UserSession).where(UserSession.user_id == user.id)).all()
        assert len(sessions) == 1  # the test helper's own sign-in


def test_a_totp_code_signs_in_once(client: TestClient) -> None:
    email, totp, _codes = _with_totp(client)
    me, thief = _from_ip(client), _from_ip(client)
    code = totp.now()
    assert _login(me, email, totp_code=code).status_code == 200
    replay = _login(thief, email, totp_code=code)
    assert replay.status_code == 401 and replay.json()["error"]["code"] == "totp_replayed"


def test_unknown_address_runs_the_same_argon2_work_on_a_dummy_hash(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    real = auth_module.verify_password

    def recording(stored_hash: str, password: str) -> bool:
        seen.append(stored_hash)
        return real(stored_hash, password)

    monkeypatch.setattr(auth_module, "verify_password", recording)
    resp = _login(_from_ip(client), _email(), PASSWORD)
    assert resp.status_code == 401 and resp.json()["error"]["message"] == "wrong email or password"
    assert seen == [dummy_password_hash()]
    # Same argon2 variant and cost parameters as a real account's hash.
    params = dummy_password_hash().rsplit("$", 2)[0]
    assert params == hash_password("anything").rsplit("$", 2)[0]
    assert not real(dummy_password_hash(), PASSWORD)


def test_enrolling_needs_the_password(client: TestClient) -> None:
    thief = _from_ip(client)  # holds a stolen session, not the password
    auth = signup(client)
    assert thief.post("/v1/auth/2fa/enroll", headers=auth).status_code == 422
    wrong = thief.post("/v1/auth/2fa/enroll", json={"password": "guess guess"}, headers=auth)
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "invalid_password"
    assert client.get("/v1/me", headers=auth).json()["two_factor_enabled"] is False
    ok = client.post("/v1/auth/2fa/enroll", json={"password": PASSWORD}, headers=auth)
    assert ok.status_code == 200 and ok.json()["otpauth_uri"].startswith("otpauth://")


def test_disabling_needs_the_password_and_a_fresh_code(client: TestClient) -> None:
    email, totp, _codes = _with_totp(client)
    me = _from_ip(client)
    code = totp.now()
    auth = {"Authorization": f"Bearer {_login(me, email, totp_code=code).json()['token']}"}

    def disable(password: str, the_code: str) -> Any:
        return me.post(
            "/v1/auth/2fa/disable", json={"password": password, "code": the_code}, headers=auth
        )

    wrong_pw = disable("guess guess", totp.now())
    assert wrong_pw.status_code == 403 and wrong_pw.json()["error"]["code"] == "invalid_password"
    assert disable(PASSWORD, _wrong_code(totp.secret)).status_code == 422
    replayed = disable(PASSWORD, code)  # the code that signed in
    assert replayed.status_code == 422 and replayed.json()["error"]["code"] == "totp_replayed"
    assert client.get("/v1/me", headers=auth).json()["two_factor_enabled"] is True
    fresh = next(c for c in (totp.at(time.time() + d) for d in (0, 30, -30)) if c != code)
    assert disable(PASSWORD, fresh).json() == {"enabled": False}
    assert client.get("/v1/me", headers=auth).json()["two_factor_enabled"] is False
