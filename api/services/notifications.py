"""The emails the API itself sends (team invitations, double opt-in confirmations).

Both go through ``kibamail.system_mail`` (the MTA intake under the platform team, so the
customer is not billed) with a guard key per invitation / contact: a retried request
finds the same row and the guard stops a second email. The signed link is only ever
mailed, never returned by the API, so only the mailbox owner can use it.
"""

from __future__ import annotations

from typing import Any

from api.errors import ApiError
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from kibamail.system_mail import SystemMailError, send_system_email

INVITE_PURPOSE = "team-invite"
CONFIRM_PURPOSE = "double-opt-in"


def _base_url(settings: Settings) -> str:
    return settings.api.public_url.rstrip("/")


def invitation_url(settings: Settings, token: str) -> str:
    return f"{_base_url(settings)}/v1/invitations/accept?token={token}"


def confirmation_url(settings: Settings, token: str) -> str:
    return f"{_base_url(settings)}/confirm/{token}"


def _send(redis: Any, settings: Settings, guard: str, **mail: Any) -> str | None:
    try:
        return send_system_email(redis, settings, guard_key=guard, **mail)
    except SystemMailError as exc:
        raise ApiError(422, f"cannot send the notification: {exc}") from exc


def send_invitation(
    redis: Any,
    settings: Settings,
    *,
    invitation_id: str,
    email: str,
    team_name: str,
    role: str,
    inviter: str,
    token: str,
) -> str | None:
    """Mail the invitation once per (invitation, role); None when it was already sent."""
    url = invitation_url(settings, token)
    subject = f"You are invited to join {team_name} on Kibamail".replace("\r", " ").replace(
        "\n", " "
    )
    text = (
        f"{inviter} invited you to join the team {team_name!r} as {role}.\n\n"
        f"Accept the invitation (sign in or sign up with {email} first):\n{url}\n\n"
        "The link expires in 7 days. If you did not expect this email, ignore it.\n"
    )
    return _send(
        redis,
        settings,
        RedisKeys.notification_sent(INVITE_PURPOSE, f"{invitation_id}:{role}"),
        to=[email],
        subject=subject,
        text=text,
        tags=["team-invite"],
    )


def send_confirmation(
    redis: Any, settings: Settings, *, contact_id: str, email: str, list_name: str, token: str
) -> str | None:
    """Mail the double opt-in link once per contact; None when it was already sent."""
    url = confirmation_url(settings, token)
    subject = f"Please confirm your subscription to {list_name}".replace("\r", " ").replace(
        "\n", " "
    )
    text = (
        f"Someone (hopefully you) subscribed {email} to {list_name!r}.\n\n"
        f"Confirm your subscription:\n{url}\n\n"
        "If this was not you, ignore this email and you will not be subscribed.\n"
    )
    return _send(
        redis,
        settings,
        RedisKeys.notification_sent(CONFIRM_PURPOSE, contact_id),
        to=[email],
        subject=subject,
        text=text,
        tags=["double-opt-in"],
    )
