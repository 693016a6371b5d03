"""Platform notifications go through the MTA's durable intake under the platform team."""

from __future__ import annotations

import email

import pytest

from kibamail.contracts import MessageMapping, OutboundMessage, deserialize
from kibamail.redis_keys import RedisKeys
from kibamail.system_mail import SystemMailError, send_system_email
from testing.submissions import submission_entries

pytestmark = pytest.mark.integration


def _queued(redis_client) -> list[OutboundMessage]:
    entries = submission_entries(redis_client)
    return [OutboundMessage.from_stream_fields(fields) for _, fields in entries]


def test_notification_is_queued_under_the_platform_team(redis_client, test_settings) -> None:
    message_id = send_system_email(
        redis_client,
        test_settings,
        to=["admin@example.com", "admin@example.com", "owner@example.com"],
        subject="Your domain example.com started failing DKIM",
        text="Publish the DKIM record again.",
        html="<p>Publish the DKIM record again.</p>",
        tags=["domain-alert"],
    )
    [queued] = _queued(redis_client)
    assert queued.message_id == message_id
    assert queued.team_id == test_settings.notifications.team_id
    assert queued.recipients == ["admin@example.com", "owner@example.com"]
    parsed = email.message_from_bytes(queued.data)
    assert parsed["Message-ID"] == f"<{message_id}>"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed.is_multipart()
    mapping = deserialize(
        MessageMapping, redis_client.get(RedisKeys.message_mapping(queued.team_id, message_id))
    )
    assert mapping.tags == ["domain-alert"]


def test_guard_key_sends_once(redis_client, test_settings) -> None:
    def send() -> str | None:
        return send_system_email(
            redis_client,
            test_settings,
            to=["a@example.com"],
            subject="Invitation",
            text="Join",
            guard_key="g:1",
        )

    first = send()
    second = send()
    assert first is not None and second is None
    assert len(_queued(redis_client)) == 1


@pytest.mark.parametrize(
    "field", [{"subject": "Hi\r\nBcc: victim@example.com"}, {"to": ["a@example.com\nX: y"]}]
)
def test_header_injection_is_refused_and_nothing_queued(redis_client, test_settings, field) -> None:
    kwargs = {"to": ["a@example.com"], "subject": "Hi", "text": "x", "guard_key": "g:2", **field}
    with pytest.raises(SystemMailError):
        send_system_email(redis_client, test_settings, **kwargs)
    assert _queued(redis_client) == []
    assert redis_client.get("g:2") is None
