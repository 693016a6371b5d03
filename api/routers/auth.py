"""Accounts: sign-up with address verification, login (with TOTP once enabled), sessions,
2FA enrolment, /v1/me. Login and the second factor are throttled (api.services.login_guard)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import select, update

from api.db import utcnow
from api.deps import CurrentUser, DbDep, PrincipalDep, StateDep
from api.errors import ApiError
from api.models import Membership, RecoveryCode, Team, User, UserSession
from api.schemas import EmailAddress
from api.services.accounts import create_user
from api.services.email_verification import mark_verified, send_verification, user_for_token
from api.services.login_guard import (
    LoginGuard,
    accept_totp_once,
    password_counters,
    second_factor_counters,
)
from api.services.security import (
    dummy_password_hash,
    new_recovery_codes,
    new_session_token,
    new_totp_secret,
    sha256_hex,
    totp_uri,
    verify_password,
    verify_totp,
)

router = APIRouter(prefix="/v1", tags=["accounts"])
SESSION_LIFETIME = timedelta(days=14)


class SignupIn(BaseModel):
    email: EmailAddress
    password: str = Field(min_length=10, max_length=256)
    name: str = Field(default="", max_length=200)


class LoginIn(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=256)
    totp_code: str | None = Field(default=None, max_length=32)
    recovery_code: str | None = Field(default=None, max_length=32)


class CodeIn(BaseModel):
    code: str = Field(min_length=6, max_length=32)


class PasswordIn(BaseModel):
    password: str = Field(max_length=256)


class DisableIn(BaseModel):
    password: str = Field(max_length=256)
    code: str = Field(min_length=6, max_length=32)


class TokenIn(BaseModel):
    token: str = Field(min_length=10, max_length=1000)


TokenQuery = Annotated[str | None, Query(min_length=10, max_length=1000)]


def _client_ip(request: Request) -> str:
    """The peer uvicorn reports (behind the proxy: from its forwarded headers)."""
    return request.client.host if request.client else "unknown"


def _new_session(db: DbDep, user_id: str) -> dict[str, Any]:
    token = new_session_token()
    expires = utcnow() + SESSION_LIFETIME
    db.add(UserSession(user_id=user_id, token_hash=sha256_hex(token), expires_at=expires))
    return {"token": token, "expires_at": expires.isoformat() + "Z"}


@router.post("/auth/signup", status_code=201, summary="Create an account")
def signup(body: SignupIn, db: DbDep, state: StateDep) -> dict[str, Any]:
    """Mails the address a verification link; the account's teams send once it is used."""
    user = create_user(db, body.email, body.password, body.name)
    sent = send_verification(state.sync_redis, state.settings, state.signer, user)
    return {
        "user": {"id": user.id, "email": user.email, "email_verified": False},
        "verification_email_sent": sent,
        **_new_session(db, user.id),
    }


def _use_recovery_code(db: DbDep, user_id: str, code: str) -> bool:
    """Marks the code used in one conditional UPDATE: two concurrent uses cannot both win."""
    row = db.scalar(
        select(RecoveryCode.id).where(
            RecoveryCode.user_id == user_id,
            RecoveryCode.code_hash == sha256_hex(code.strip()),
            RecoveryCode.used_at.is_(None),
        )
    )
    if row is None:
        return False
    claimed = db.execute(
        update(RecoveryCode)
        .where(RecoveryCode.id == row, RecoveryCode.used_at.is_(None))
        .values(used_at=utcnow())
    )
    return bool(getattr(claimed, "rowcount", 0) == 1)


def _check_password(
    guard: LoginGuard, user: User | None, password: str, ip: str, email: str
) -> None:
    """401 on a wrong password (counted), 429 while locked out. An unknown address costs
    the same argon2 work (a dummy hash) and counts the same, so neither the timing nor
    the lockout tells which addresses have accounts."""
    counters = password_counters(email, ip)
    guard.check(*counters)
    stored = user.password_hash if user is not None else dummy_password_hash()
    if not verify_password(stored, password) or user is None:
        guard.failed(*counters)
        raise ApiError(401, "wrong email or password")


def _second_factor(
    db: DbDep, state: StateDep, guard: LoginGuard, user: User, body: LoginIn, ip: str
) -> None:
    if not body.recovery_code and not body.totp_code:
        raise ApiError(401, "two-factor code required", "totp_required")
    counters = second_factor_counters(user.id, ip)
    guard.check(*counters)
    if body.recovery_code:
        if not _use_recovery_code(db, user.id, body.recovery_code):
            guard.failed(*counters)
            raise ApiError(401, "invalid or used recovery code", "invalid_recovery_code")
    else:
        refused = accept_totp_once(
            state.sync_redis, user.id, user.totp_secret or "", body.totp_code or ""
        )
        if refused is not None:
            guard.failed(*counters)
            message = "wrong two-factor code"
            if refused == "totp_replayed":
                message = "this two-factor code was already used; wait for the next one"
            raise ApiError(401, message, refused)
    guard.succeeded(counters[0])


@router.post("/auth/login", summary="Log in; returns a bearer session token")
def login(body: LoginIn, request: Request, db: DbDep, state: StateDep) -> dict[str, Any]:
    """Throttled per account and per client IP: 429 + Retry-After once locked out."""
    guard = LoginGuard(state.sync_redis)
    ip = _client_ip(request)
    email = body.email.strip().lower()
    user = db.scalar(select(User).where(User.email == email))
    _check_password(guard, user, body.password, ip, email)
    assert user is not None
    if user.totp_enabled:
        _second_factor(db, state, guard, user, body, ip)
    guard.succeeded(password_counters(email, ip)[0])
    return _new_session(db, user.id)


@router.post("/auth/logout", summary="Revoke every session token of this user")
def logout(user: CurrentUser, principal: PrincipalDep, db: DbDep) -> dict[str, Any]:
    _ = principal
    for session in db.scalars(select(UserSession).where(UserSession.user_id == user.id)):
        session.revoked = True
    return {"status": "logged_out"}


def _reauthenticate(state: StateDep, request: Request, user: User, password: str) -> None:
    """The password again for 2FA changes: a stolen session alone cannot turn 2FA on (and
    lock the owner out) or off. Wrong passwords count towards the login lockout."""
    guard = LoginGuard(state.sync_redis)
    try:
        _check_password(guard, user, password, _client_ip(request), user.email)
    except ApiError as exc:
        if exc.status != 401:
            raise
        raise ApiError(403, "wrong password", "invalid_password") from exc


@router.post("/auth/2fa/enroll", summary="Start TOTP enrolment (needs the password)")
def enroll_totp(
    body: PasswordIn, request: Request, user: CurrentUser, state: StateDep
) -> dict[str, Any]:
    if user.totp_enabled:
        raise ApiError(409, "two-factor authentication is already enabled")
    _reauthenticate(state, request, user, body.password)
    user.totp_secret = new_totp_secret()
    return {"secret": user.totp_secret, "otpauth_uri": totp_uri(user.totp_secret, user.email)}


@router.post("/auth/2fa/verify", summary="Confirm enrolment with a code; returns recovery codes")
def confirm_totp(body: CodeIn, user: CurrentUser, db: DbDep) -> dict[str, Any]:
    if user.totp_enabled or not user.totp_secret:
        raise ApiError(409, "start enrolment first (or 2FA is already enabled)")
    if not verify_totp(user.totp_secret, body.code):
        raise ApiError(422, "wrong two-factor code", "invalid_totp")
    user.totp_enabled = True
    codes = new_recovery_codes()
    db.add_all(RecoveryCode(user_id=user.id, code_hash=sha256_hex(c)) for c in codes)
    return {"enabled": True, "recovery_codes": codes}


@router.post("/auth/2fa/disable", summary="Turn 2FA off (needs the password and a current code)")
def disable_totp(
    body: DisableIn, request: Request, user: CurrentUser, db: DbDep, state: StateDep
) -> dict[str, Any]:
    if not user.totp_enabled:
        raise ApiError(409, "two-factor authentication is not enabled")
    _reauthenticate(state, request, user, body.password)
    guard = LoginGuard(state.sync_redis)
    counters = second_factor_counters(user.id, _client_ip(request))
    guard.check(*counters)
    refused = accept_totp_once(state.sync_redis, user.id, user.totp_secret or "", body.code)
    if refused is not None:
        guard.failed(*counters)
        raise ApiError(422, "wrong or already used two-factor code", refused)
    user.totp_enabled = False
    user.totp_secret = None
    for code in db.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user.id)):
        db.delete(code)
    return {"enabled": False}


@router.get("/auth/verify-email", summary="What a verification link verifies (changes nothing)")
def show_verification(token: TokenQuery, db: DbDep, state: StateDep) -> dict[str, Any]:
    """Mail scanners prefetch links, so GET only shows; POST verifies."""
    user = user_for_token(db, state.signer, token or "")
    return {
        "email": user.email,
        "email_verified": user.email_verified_at is not None,
        "verify": 'POST this URL (or the token as {"token"}) to confirm the address',
    }


@router.post("/auth/verify-email", summary="Verify the account's address (mailed token)")
def verify_email(
    db: DbDep, state: StateDep, body: TokenIn | None = None, token: TokenQuery = None
) -> dict[str, Any]:
    raw = body.token if body is not None else token
    if not raw:
        raise ApiError(422, "a verification token is needed (query ?token= or body)")
    user = user_for_token(db, state.signer, raw)
    mark_verified(user)
    return {"email": user.email, "email_verified": True}


@router.post("/auth/verify-email/resend", summary="Mail the verification link again")
def resend_verification(user: CurrentUser, state: StateDep) -> dict[str, Any]:
    if user.email_verified_at is not None:
        raise ApiError(409, "the address is already verified", "already_verified")
    sent = send_verification(state.sync_redis, state.settings, state.signer, user, resend=True)
    return {"email": user.email, "email_sent": sent}


@router.get("/me", summary="The current user and every team they belong to, with roles")
def me(user: CurrentUser, db: DbDep) -> dict[str, Any]:
    rows = db.execute(
        select(Team.id, Team.name, Membership.role)
        .join(Membership, Membership.team_id == Team.id)
        .where(Membership.user_id == user.id)
        .order_by(Team.created_at, Team.id)
    )
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "email_verified": user.email_verified_at is not None,
        "two_factor_enabled": user.totp_enabled,
        "teams": [{"id": tid, "name": name, "role": role} for tid, name, role in rows],
    }
