"""Accounts: sign-up, login (with TOTP once enabled), sessions, 2FA enrolment, /v1/me."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import select

from api.db import utcnow
from api.deps import CurrentUser, DbDep, PrincipalDep
from api.errors import ApiError
from api.models import Membership, RecoveryCode, Team, UserSession
from api.schemas import EmailAddress
from api.services.accounts import create_user
from api.services.security import (
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


def _new_session(db: DbDep, user_id: str) -> dict[str, Any]:
    token = new_session_token()
    expires = utcnow() + SESSION_LIFETIME
    db.add(UserSession(user_id=user_id, token_hash=sha256_hex(token), expires_at=expires))
    return {"token": token, "expires_at": expires.isoformat() + "Z"}


@router.post("/auth/signup", status_code=201, summary="Create an account")
def signup(body: SignupIn, db: DbDep) -> dict[str, Any]:
    user = create_user(db, body.email, body.password, body.name)
    return {"user": {"id": user.id, "email": user.email}, **_new_session(db, user.id)}


def _use_recovery_code(db: DbDep, user_id: str, code: str) -> bool:
    row = db.scalar(
        select(RecoveryCode).where(
            RecoveryCode.user_id == user_id,
            RecoveryCode.code_hash == sha256_hex(code.strip()),
            RecoveryCode.used_at.is_(None),
        )
    )
    if row is None:
        return False
    row.used_at = utcnow()
    return True


@router.post("/auth/login", summary="Log in; returns a bearer session token")
def login(body: LoginIn, db: DbDep) -> dict[str, Any]:
    from api.models import User

    user = db.scalar(select(User).where(User.email == body.email.strip().lower()))
    if user is None or not verify_password(user.password_hash, body.password):
        raise ApiError(401, "wrong email or password")
    if user.totp_enabled:
        if body.recovery_code:
            if not _use_recovery_code(db, user.id, body.recovery_code):
                raise ApiError(401, "invalid or used recovery code", "invalid_recovery_code")
        elif not body.totp_code:
            raise ApiError(401, "two-factor code required", "totp_required")
        elif not verify_totp(user.totp_secret or "", body.totp_code):
            raise ApiError(401, "wrong two-factor code", "invalid_totp")
    return _new_session(db, user.id)


@router.post("/auth/logout", summary="Revoke every session token of this user")
def logout(user: CurrentUser, principal: PrincipalDep, db: DbDep) -> dict[str, Any]:
    _ = principal
    for session in db.scalars(select(UserSession).where(UserSession.user_id == user.id)):
        session.revoked = True
    return {"status": "logged_out"}


@router.post("/auth/2fa/enroll", summary="Start TOTP enrolment (returns the otpauth URI)")
def enroll_totp(user: CurrentUser) -> dict[str, Any]:
    if user.totp_enabled:
        raise ApiError(409, "two-factor authentication is already enabled")
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


@router.post("/auth/2fa/disable", summary="Turn 2FA off (needs a current code)")
def disable_totp(body: CodeIn, user: CurrentUser, db: DbDep) -> dict[str, Any]:
    if not user.totp_enabled or not verify_totp(user.totp_secret or "", body.code):
        raise ApiError(422, "wrong two-factor code", "invalid_totp")
    user.totp_enabled = False
    user.totp_secret = None
    for code in db.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user.id)):
        db.delete(code)
    return {"enabled": False}


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
        "two_factor_enabled": user.totp_enabled,
        "teams": [{"id": tid, "name": name, "role": role} for tid, name, role in rows],
    }
