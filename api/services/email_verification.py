"""Sign-up address verification: a team sends only once its creator proved the address.

A new account is mailed a signed, expiring link (through ``kibamail.system_mail``, like the
other platform mail); the link is only ever mailed, never returned by the API, so only the
mailbox owner can verify. Until the creator of a team is verified, that team's sends, SMTP
credential creation and broadcast launches answer 403 ``email_not_verified``: an address
nobody controls must not become a sending account. Verification is one-way, so a
decision "verified" may be cached (api.deps caches API-key records of verified teams only).
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db import utcnow
from api.errors import ApiError
from api.models import Team, User
from api.services.security import Signer, TokenError
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from kibamail.system_mail import SystemMailError, send_system_email

VERIFY_PURPOSE = "email-verify"
VERIFY_LIFETIME = timedelta(days=3)
RESEND_INTERVAL_SECONDS = 600


def not_verified_error() -> ApiError:
    return ApiError(
        403,
        "verify the account's email address first: this team cannot send until the "
        "address of the account that created it is confirmed (see the verification email, "
        "or POST /v1/auth/verify-email/resend)",
        "email_not_verified",
    )


def verification_token(signer: Signer, user: User) -> str:
    """Bound to the address too, so a token never verifies an address it was not sent to."""
    return signer.dumps_timed(VERIFY_PURPOSE, {"user": user.id, "email": user.email})


def verification_url(settings: Settings, token: str) -> str:
    return f"{settings.api.public_url.rstrip('/')}/v1/auth/verify-email?token={token}"


def send_verification(
    redis: Any, settings: Settings, signer: Signer, user: User, *, resend: bool = False
) -> bool:
    """Mail the link; False when not sent (already sent: once at sign-up, at most one
    resend per RESEND_INTERVAL_SECONDS; or an address the mailer refuses)."""
    ref = user.id
    if resend:
        ref = f"{user.id}:resend:{int(time.time()) // RESEND_INTERVAL_SECONDS}"
    url = verification_url(settings, verification_token(signer, user))
    text = (
        f"Confirm that {user.email} is your address to finish setting up your Kibamail "
        f"account:\n{url}\n\n"
        "Until it is confirmed, your teams cannot send email. The link expires in 3 days.\n"
        "If you did not sign up, ignore this email.\n"
    )
    try:
        sent = send_system_email(
            redis,
            settings,
            to=[user.email],
            subject="Confirm your email address for Kibamail",
            text=text,
            tags=["email-verify"],
            guard_key=RedisKeys.notification_sent(VERIFY_PURPOSE, ref),
        )
    except SystemMailError:
        return False
    return sent is not None


def user_for_token(db: Session, signer: Signer, token: str) -> User:
    """The account a link verifies; 400 ``invalid_token`` for forged, expired or stale."""
    try:
        payload = signer.loads_timed(VERIFY_PURPOSE, token, int(VERIFY_LIFETIME.total_seconds()))
    except TokenError as exc:
        raise ApiError(400, f"verification token refused: {exc}", "invalid_token") from exc
    user = db.get(User, payload.get("user", "")) if isinstance(payload, dict) else None
    if user is None or user.email != payload.get("email"):
        raise ApiError(400, "this verification link is for another address", "invalid_token")
    return user


def mark_verified(user: User) -> None:
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()


def team_sender_verified(db: Session, team_id: str) -> bool:
    """A team may send once the account that created it has a verified address."""
    verified_at = db.scalar(
        select(User.email_verified_at)
        .join(Team, Team.created_by == User.id)
        .where(Team.id == team_id)
    )
    return verified_at is not None
