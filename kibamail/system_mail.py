"""Platform notifications (invitations, opt-in confirmations, domain alerts, digests).

Every one goes through the same durable hand-over as customer mail (``kibamail.intake.submit``),
so it is queued, signed, retried and reported like any other message. It carries the
platform team id from ``settings.notifications`` (not the customer's), so billing never
counts it. An optional ``guard_key`` makes a retried caller send at most once.
"""

from __future__ import annotations

import uuid
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any

from kibamail.contracts import MessageMapping, OutboundMessage, TrafficKind
from kibamail.settings import Settings

DEFAULT_GUARD_TTL_SECONDS = 7 * 24 * 3600


class SystemMailError(ValueError):
    """A notification that must not be sent (e.g. header injection in a field)."""


def _clean(value: str, field: str) -> str:
    if "\r" in value or "\n" in value:
        raise SystemMailError(f"{field} must not contain CR or LF")
    return value


def render_system_email(
    *,
    sender: str,
    to: list[str],
    subject: str,
    text: str,
    html: str | None = None,
    message_id: str,
    headers: dict[str, str] | None = None,
) -> bytes:
    """An RFC 5322 message with a Message-ID equal to ``<message_id>``."""
    message = EmailMessage()
    message["From"] = _clean(sender, "sender")
    message["To"] = ", ".join(_clean(address, "recipient") for address in to)
    message["Subject"] = _clean(subject, "subject")
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = f"<{message_id}>"
    message["Auto-Submitted"] = "auto-generated"
    for name, value in (headers or {}).items():
        message[_clean(name, "header name")] = _clean(value, f"header {name}")
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message.as_bytes()


def sender_address(settings: Settings) -> str:
    """The bare envelope address of the notification sender."""
    address = parseaddr(settings.notifications.sender)[1]
    if "@" not in address:
        raise SystemMailError(
            f"notifications.sender has no address: {settings.notifications.sender!r}"
        )
    return Address(addr_spec=address).addr_spec


def send_system_email(
    redis: Any,
    settings: Settings,
    *,
    to: list[str],
    subject: str,
    text: str,
    html: str | None = None,
    tags: list[str] | None = None,
    headers: dict[str, str] | None = None,
    guard_key: str | None = None,
    guard_ttl_seconds: int = DEFAULT_GUARD_TTL_SECONDS,
) -> str | None:
    """Queue one notification; returns its message id, or None when ``guard_key`` was
    already used (sent before). Raises SystemMailError for unsafe input, leaving no guard."""
    from kibamail.intake import submit

    recipients = sorted({_clean(address, "recipient").strip() for address in to if address})
    if not recipients:
        raise SystemMailError("a notification needs at least one recipient")
    envelope_from = sender_address(settings)
    message_id = f"{uuid.uuid4().hex}@{envelope_from.rsplit('@', 1)[1]}"
    data = render_system_email(
        sender=settings.notifications.sender,
        to=recipients,
        subject=subject,
        text=text,
        html=html,
        message_id=message_id,
        headers=headers,
    )
    if guard_key is not None and not redis.set(
        guard_key, message_id, nx=True, ex=guard_ttl_seconds
    ):
        return None
    team_id = settings.notifications.team_id
    message = OutboundMessage(
        message_id=message_id,
        team_id=team_id,
        kind=TrafficKind.TRANSACTIONAL,
        mail_from=envelope_from,
        recipients=recipients,
        data=data,
        source="api",
    )
    try:
        submit(redis, message, MessageMapping(team_id=team_id, tags=list(tags or [])))
    except Exception:
        if guard_key is not None:
            redis.delete(guard_key)  # not queued: a retry must be able to send it
        raise
    return message_id
