"""Platform mail (invitations, double opt-in confirmations) cannot be turned into a spam
channel: capped per team per hour and per day, fixed Subject, customer names escaped."""

from __future__ import annotations

import email
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import default
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.errors import ApiError
from api.services import notifications
from api.services.notifications import CONFIRM_PURPOSE, INVITE_PURPOSE, take_platform_mail
from api.tests.conftest import RecordingProducer, signup
from kibamail.contracts import OutboundMessage
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from testing.submissions import submission_entries

pytestmark = pytest.mark.integration

PER_HOUR, PER_DAY = 5, 8
HOSTILE = "Win $$$ now! <script>alert(1)</script>"


@pytest.fixture
def capped_settings(api_settings: Settings) -> Settings:
    caps = api_settings.notifications.model_copy(
        update={
            "invitations_per_hour": PER_HOUR,
            "invitations_per_day": PER_DAY,
            "confirmations_per_hour": PER_HOUR,
            "confirmations_per_day": PER_DAY,
        }
    )
    return api_settings.model_copy(update={"notifications": caps})


@pytest.fixture
def capped(capped_settings: Settings, redis_client: Any) -> Iterator[TestClient]:
    app = create_app(capped_settings, producer=RecordingProducer(), run_scheduler=False)
    with TestClient(app) as test_client:
        yield test_client


def _queued(redis: Any) -> list[tuple[OutboundMessage, EmailMessage]]:
    """Every message on the MTA stream (one scan, however many were sent)."""
    found = []
    for _id, fields in submission_entries(redis):
        message = OutboundMessage.from_stream_fields(fields)
        parsed = email.message_from_bytes(message.data, policy=default)
        assert isinstance(parsed, EmailMessage)
        found.append((message, parsed))
    return found


def _team(client: TestClient, name: str = "Acme") -> tuple[dict[str, str], str]:
    owner = signup(client)
    team_id = client.post("/v1/teams", json={"name": name}, headers=owner).json()["id"]
    return owner, f"/v1/teams/{team_id}"


def _assert_capped(resp: Any) -> None:
    assert resp.status_code == 429, resp.text
    assert 1 <= int(resp.headers["Retry-After"]) <= 3600
    error = resp.json()["error"]
    assert error["code"] == "rate_limited" and f"its {PER_HOUR}" in error["message"]


def test_a_burst_of_1000_invitations_sends_only_the_hourly_cap(
    capped: TestClient, redis_client: Any
) -> None:
    owner, base = _team(capped)
    answers = [
        capped.post(f"{base}/invitations", json={"email": f"i{n}@victims.example"}, headers=owner)
        for n in range(1000)
    ]
    assert [r.status_code for r in answers[:PER_HOUR]] == [201] * PER_HOUR
    for refused in answers[PER_HOUR:]:
        _assert_capped(refused)
    assert len(_queued(redis_client)) == PER_HOUR
    # A refused invitation was not stored either (the request rolled back): retrying it
    # later is a fresh invitation, still capped now.
    _assert_capped(
        capped.post(f"{base}/invitations", json={"email": "i999@victims.example"}, headers=owner)
    )
    # Another team has its own cap.
    other_owner, other = _team(capped)
    ok = capped.post(f"{other}/invitations", json={"email": "x@y.example"}, headers=other_owner)
    assert ok.status_code == 201 and ok.json()["email_sent"] is True


def test_a_burst_of_1000_opt_ins_sends_only_the_cap_and_adds_nobody_else(
    capped: TestClient, redis_client: Any
) -> None:
    owner, base = _team(capped)
    lst = capped.post(
        f"{base}/lists", json={"name": "L", "double_opt_in": True}, headers=owner
    ).json()["id"]
    answers = [
        capped.post(
            f"{base}/lists/{lst}/contacts", json={"email": f"o{n}@victims.example"}, headers=owner
        )
        for n in range(1000)
    ]
    assert [r.status_code for r in answers[:PER_HOUR]] == [201] * PER_HOUR
    for refused in answers[PER_HOUR:]:
        _assert_capped(refused)
    assert len(_queued(redis_client)) == PER_HOUR
    contacts = capped.get(f"{base}/lists/{lst}/contacts", headers=owner).json()["data"]
    assert len(contacts) == PER_HOUR  # over the cap nothing was stored or sent


def test_a_1000_row_import_imports_every_row_and_defers_confirmations_over_the_cap(
    capped: TestClient, redis_client: Any
) -> None:
    owner, base = _team(capped)
    lst = capped.post(
        f"{base}/lists", json={"name": "L", "double_opt_in": True}, headers=owner
    ).json()["id"]
    csv = "email\n" + "".join(f"r{n}@victims.example\n" for n in range(1000))
    report = capped.post(f"{base}/lists/{lst}/import", content=csv.encode(), headers=owner)
    assert report.status_code == 200
    body = report.json()
    assert body["imported"] == 1000 and body["status"] == "pending"
    assert body["confirmation_emails"] == PER_HOUR
    assert body["confirmations_deferred"] == 1000 - PER_HOUR
    assert 1 <= body["confirmations_retry_after"] <= 3600
    assert len(_queued(redis_client)) == PER_HOUR
    # Once the hour has passed (its counter gone), re-importing mails the next ones, and
    # the day cap stops it at PER_DAY in total.
    team_id = base.rsplit("/", 1)[1]
    hour = int(time.time() // 3600)
    redis_client.delete(RedisKeys.platform_mail_count(CONFIRM_PURPOSE, team_id, f"h:{hour}"))
    again = capped.post(f"{base}/lists/{lst}/import", content=csv.encode(), headers=owner)
    assert again.json()["confirmation_emails"] == PER_DAY - PER_HOUR
    assert again.json()["confirmations_deferred"] == 1000 - PER_DAY
    recipients = [m.recipients[0] for m, _ in _queued(redis_client)]
    assert len(recipients) == len(set(recipients)) == PER_DAY  # nobody mailed twice


def test_the_day_cap_answers_with_the_time_to_midnight(
    capped_settings: Settings, redis_client: Any
) -> None:
    team_id = uuid.uuid4().hex
    day = int(time.time() // 86400)
    redis_client.set(RedisKeys.platform_mail_count(INVITE_PURPOSE, team_id, f"d:{day}"), PER_DAY)
    reached = take_platform_mail(redis_client, capped_settings, INVITE_PURPOSE, team_id)
    assert reached is not None and reached.window == "day" and reached.limit == PER_DAY
    assert 1 <= reached.retry_after <= 86400
    hour = int(time.time() // 3600)
    hour_key = RedisKeys.platform_mail_count(INVITE_PURPOSE, team_id, f"h:{hour}")
    assert redis_client.get(hour_key) is None  # a refusal counts nothing


def test_customer_names_never_reach_the_subject_and_are_escaped_in_html(
    capped: TestClient, redis_client: Any
) -> None:
    owner, base = _team(capped, HOSTILE)
    invited = capped.post(
        f"{base}/invitations", json={"email": "in@victims.example"}, headers=owner
    )
    assert invited.status_code == 201
    lst = capped.post(
        f"{base}/lists", json={"name": HOSTILE, "double_opt_in": True}, headers=owner
    ).json()["id"]
    added = capped.post(
        f"{base}/lists/{lst}/contacts", json={"email": "op@victims.example"}, headers=owner
    )
    assert added.status_code == 201
    mails = {m.recipients[0]: parsed for m, parsed in _queued(redis_client)}
    subjects = {
        "in@victims.example": notifications.INVITE_SUBJECT,
        "op@victims.example": notifications.CONFIRM_SUBJECT,
    }
    for address, subject in subjects.items():
        parsed = mails[address]
        assert parsed["Subject"] == subject and "Kibamail" in subject
        assert "Win" not in parsed["Subject"] and "$" not in parsed["Subject"]
        html_part = parsed.get_body(preferencelist=("html",))
        assert html_part is not None
        page = html_part.get_content()
        assert "<script>" not in page
        assert "Win $$$ now! &lt;script&gt;alert(1)&lt;/script&gt;" in page
        text_part = parsed.get_body(preferencelist=("plain",))
        assert text_part is not None and HOSTILE in text_part.get_content()


def test_a_refused_notification_does_not_use_up_the_cap(
    capped_settings: Settings, redis_client: Any
) -> None:
    team_id = uuid.uuid4().hex
    hour = int(time.time() // 3600)
    hour_key = RedisKeys.platform_mail_count(INVITE_PURPOSE, team_id, f"h:{hour}")
    injected = "in@victims.example\r\nBcc: everyone@victims.example"
    for n in range(PER_HOUR + 2):
        with pytest.raises(ApiError) as refused:
            notifications.send_invitation(
                redis_client,
                capped_settings,
                team_id=team_id,
                invitation_id=f"inv{n}",
                email=injected,
                team_name="T",
                role="author",
                inviter="o@x.example",
                token="t",
            )
        assert refused.value.status == 422 and "CR or LF" in refused.value.message
    assert int(redis_client.get(hour_key) or 0) == 0
    assert _queued(redis_client) == []
