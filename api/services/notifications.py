"""The emails the API itself sends (team invitations, double opt-in confirmations).

Both go through ``kibamail.system_mail`` (the MTA intake under the platform team, so the
customer is not billed) with a guard key per invitation / contact: a retried request
finds the same row and the guard stops a second email. The signed link is only ever
mailed, never returned by the API, so only the mailbox owner can use it.

They go out from the platform's own sender, so a customer must not be able to use them
as a free spam channel: each team's count per purpose is capped per hour and per day
(``NotificationSettings``), and the Subject is fixed text naming the platform. The
customer-chosen team or list name appears only in the body (HTML-escaped in the HTML part).
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from typing import Any

from api.errors import ApiError
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from kibamail.system_mail import SystemMailError, send_system_email

INVITE_PURPOSE = "team-invite"
CONFIRM_PURPOSE = "double-opt-in"
INVITE_SUBJECT = "Your invitation to a team on Kibamail"
CONFIRM_SUBJECT = "Please confirm your email subscription (sent by Kibamail)"
HOUR, DAY = 3600, 86400

# KEYS: hour counter, day counter. ARGV: hour limit, day limit, hour TTL, day TTL.
# Returns 0 (taken), 1 (hour cap reached) or 2 (day cap reached); counts only when taken.
_TAKE_LUA = """
local hour = tonumber(redis.call('GET', KEYS[1]) or '0')
local day = tonumber(redis.call('GET', KEYS[2]) or '0')
if hour >= tonumber(ARGV[1]) then return 1 end
if day >= tonumber(ARGV[2]) then return 2 end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 0
"""
# KEYS: the same counters. Un-count one, only where the window still exists (a counter
# must never be recreated without its expiry).
_GIVE_BACK_LUA = """
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then redis.call('DECR', key) end
end
return 0
"""


@dataclass(frozen=True)
class CapReached:
    """Why a platform email was not sent: which window is full and when it reopens."""

    window: str  # "hour" | "day"
    limit: int
    retry_after: int  # seconds

    def error(self, what: str) -> ApiError:
        return ApiError(
            429,
            f"this team has sent its {self.limit} {what} for this {self.window}; "
            f"retry in {self.retry_after} s",
            "rate_limited",
            [{"path": "", "message": f"platform mail cap per {self.window} reached"}],
            headers={"Retry-After": str(self.retry_after)},
        )


def _limits(settings: Settings, purpose: str) -> tuple[int, int]:
    n = settings.notifications
    if purpose == INVITE_PURPOSE:
        return n.invitations_per_hour, n.invitations_per_day
    return n.confirmations_per_hour, n.confirmations_per_day


def _windows(purpose: str, team_id: str, now: float) -> tuple[list[str], int, int]:
    """Counter keys of the current fixed hour and day, and the seconds left in each."""
    hour, day = int(now // HOUR), int(now // DAY)
    keys = [
        RedisKeys.platform_mail_count(purpose, team_id, f"h:{hour}"),
        RedisKeys.platform_mail_count(purpose, team_id, f"d:{day}"),
    ]
    return keys, max(1, int((hour + 1) * HOUR - now)), max(1, int((day + 1) * DAY - now))


def take_platform_mail(
    redis: Any, settings: Settings, purpose: str, team_id: str, now: float | None = None
) -> CapReached | None:
    """Count one platform email for the team; CapReached (nothing counted) when full."""
    per_hour, per_day = _limits(settings, purpose)
    keys, hour_left, day_left = _windows(purpose, team_id, time.time() if now is None else now)
    result = int(redis.eval(_TAKE_LUA, 2, *keys, per_hour, per_day, HOUR + 60, DAY + 60))
    if result == 1:
        return CapReached("hour", per_hour, hour_left)
    if result == 2:
        return CapReached("day", per_day, day_left)
    return None


def _give_back(redis: Any, purpose: str, team_id: str, now: float) -> None:
    """An email counted but not queued (already sent, or refused) must not use the cap;
    ``now`` is the time it was counted at, so the same windows are un-counted."""
    keys, _, _ = _windows(purpose, team_id, now)
    redis.eval(_GIVE_BACK_LUA, len(keys), *keys)


def _base_url(settings: Settings) -> str:
    return settings.api.public_url.rstrip("/")


def invitation_url(settings: Settings, token: str) -> str:
    return f"{_base_url(settings)}/v1/invitations/accept?token={token}"


def confirmation_url(settings: Settings, token: str) -> str:
    return f"{_base_url(settings)}/confirm/{token}"


def _html(paragraphs: list[str], url: str, button: str) -> str:
    """Every argument is escaped here: names come from customers."""
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    link = f'<p><a href="{html.escape(url, quote=True)}">{html.escape(button)}</a></p>'
    return f"<!doctype html><html><body>{body}{link}</body></html>"


def _send(
    redis: Any, settings: Settings, purpose: str, team_id: str, guard: str, **mail: Any
) -> str | None:
    """Guard first (a repeat is free), then the cap, then the hand-over."""
    if redis.exists(guard):
        return None
    now = time.time()
    capped = take_platform_mail(redis, settings, purpose, team_id, now)
    if capped is not None:
        what = "invitation emails" if purpose == INVITE_PURPOSE else "confirmation emails"
        raise capped.error(what)
    try:
        sent = send_system_email(redis, settings, guard_key=guard, **mail)
    except SystemMailError as exc:
        _give_back(redis, purpose, team_id, now)
        raise ApiError(422, f"cannot send the notification: {exc}") from exc
    except Exception:
        _give_back(redis, purpose, team_id, now)
        raise
    if sent is None:  # a concurrent request won the guard
        _give_back(redis, purpose, team_id, now)
    return sent


def send_invitation(
    redis: Any,
    settings: Settings,
    *,
    team_id: str,
    invitation_id: str,
    email: str,
    team_name: str,
    role: str,
    inviter: str,
    token: str,
) -> str | None:
    """Mail the invitation once per (invitation, role); None when it was already sent.
    ApiError 429 (Retry-After) when the team's invitation cap is reached."""
    url = invitation_url(settings, token)
    lines = [
        f"{inviter} invited you to join the team {team_name!r} on Kibamail as {role}.",
        f"Accept the invitation (sign in or sign up with {email} first):",
    ]
    notice = "The link expires in 7 days. If you did not expect this email, ignore it."
    return _send(
        redis,
        settings,
        INVITE_PURPOSE,
        team_id,
        RedisKeys.notification_sent(INVITE_PURPOSE, f"{invitation_id}:{role}"),
        to=[email],
        subject=INVITE_SUBJECT,
        text="\n\n".join([*lines[:1], f"{lines[1]}\n{url}", notice]) + "\n",
        html=_html([*lines, notice], url, "Accept the invitation"),
        tags=["team-invite"],
    )


def send_confirmation(
    redis: Any,
    settings: Settings,
    *,
    team_id: str,
    contact_id: str,
    email: str,
    list_name: str,
    token: str,
) -> str | None:
    """Mail the double opt-in link once per contact; None when it was already sent.
    ApiError 429 (Retry-After) when the team's confirmation cap is reached."""
    url = confirmation_url(settings, token)
    first = f"Someone (hopefully you) subscribed {email} to the list {list_name!r}."
    notice = "If this was not you, ignore this email and you will not be subscribed."
    return _send(
        redis,
        settings,
        CONFIRM_PURPOSE,
        team_id,
        RedisKeys.notification_sent(CONFIRM_PURPOSE, contact_id),
        to=[email],
        subject=CONFIRM_SUBJECT,
        text=f"{first}\n\nConfirm your subscription:\n{url}\n\n{notice}\n",
        html=_html([first, notice], url, "Confirm my subscription"),
        tags=["double-opt-in"],
    )
