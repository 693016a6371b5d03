"""Transitions, event ids and the once-per-failure email of deliverability.domain_alerts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from deliverability.domain_alerts import (
    PublishHint,
    Transition,
    alert_guard_key,
    event_id,
    find_transitions,
    raise_alerts,
    render_alert,
    settled_status,
)
from deliverability.domain_checks import DomainCheckReport, RecordCheck
from kibamail.contracts import DomainCheckEvent, OutboundMessage
from kibamail.settings import Settings
from testing.submissions import submission_entries

AT = datetime(2026, 11, 28, 6, 20, tzinfo=UTC)
HINTS = {"dkim": PublishHint("TXT", "kb1._domainkey.shop.example", "v=DKIM1; k=rsa; p=OURS")}


def report(**statuses: str) -> DomainCheckReport:
    checks = {name: RecordCheck("pass") for name in ("spf", "dkim", "dmarc", "mx", "return_path")}
    for name, status in statuses.items():
        reasons = [f"{name} is wrong"] if status == "fail" else []
        found = ["v=DKIM1; p=OTHER"] if name == "dkim" and status == "fail" else []
        checks[name] = RecordCheck(status, found, reasons)  # type: ignore[arg-type]
    return DomainCheckReport("shop.example", checks)


@pytest.mark.unit
def test_only_pass_to_fail_is_a_transition_and_unknown_keeps_what_was_known() -> None:
    passing = dict.fromkeys(("spf", "dkim", "dmarc", "mx", "return_path"), "pass")
    broken = report(dkim="fail", mx="fail")
    found = find_transitions(passing, broken, was_ready=True)
    assert [(t.record, t.previous, t.current) for t in found] == [
        ("dkim", "pass", "fail"),
        ("mx", "pass", "fail"),
        ("ready", "pass", "fail"),
    ]
    assert "dkim" in found[-1].reason
    # Still failing next hour: nothing new; a DNS timeout is not a change either.
    assert find_transitions({**passing, "dkim": "fail"}, broken, was_ready=False)[0].record == "mx"
    assert find_transitions(passing, report(dkim="unknown"), was_ready=True) == []
    assert settled_status("pass", "unknown") == "pass"
    assert settled_status("pass", "fail") == "fail"
    # Never checked before (e.g. a bootstrap domain): only the readiness transition.
    assert [t.record for t in find_transitions({}, broken, was_ready=True)] == ["ready"]


@pytest.mark.unit
def test_event_ids_are_stable_per_domain_record_transition_and_check_time() -> None:
    t = Transition("dkim", "pass", "fail", "")
    assert event_id("a.example", t, AT) == event_id("a.example", t, AT)
    assert event_id("a.example", t, AT) != event_id("b.example", t, AT)
    assert event_id("a.example", t, AT) != event_id("a.example", t, AT.replace(hour=7))
    assert event_id("a.example", t, AT) != event_id(
        "a.example", Transition("spf", "pass", "fail", ""), AT
    )
    # Two teams that added the same name get their own events and their own alert email.
    assert event_id("a.example", t, AT, "team-1") != event_id("a.example", t, AT, "team-2")
    assert alert_guard_key("a.example", [t], "never", "team-1") != alert_guard_key(
        "a.example", [t], "never", "team-2"
    )


@pytest.mark.unit
def test_alert_text_says_what_failed_what_was_expected_found_and_to_publish() -> None:
    broken = report(dkim="fail", mx="fail")
    transitions = find_transitions({"dkim": "pass", "mx": "pass"}, broken, was_ready=True)
    subject, text = render_alert(broken, transitions, HINTS, AT)
    assert subject == "shop.example: DNS check failing (DKIM (RSA), MX)"
    assert "expected: TXT record at kb1._domainkey.shop.example: v=DKIM1; k=rsa; p=OURS" in text
    assert "found:    v=DKIM1; p=OTHER" in text
    assert "problem:  dkim is wrong" in text
    assert "publish:  kb1._domainkey.shop.example TXT v=DKIM1; k=rsa; p=OURS" in text
    assert "expected: an MX record for shop.example that accepts mail" in text
    assert "found:    nothing" in text
    assert "no longer ready to send" in text


@pytest.mark.integration
def test_a_retried_run_mails_once_and_a_new_failure_mails_again(
    redis_client: Any, test_settings: Settings
) -> None:
    broken = report(dkim="fail")
    transitions = find_transitions({"dkim": "pass"}, broken, was_ready=True)
    published: list[DomainCheckEvent] = []

    def run(since: str) -> Any:
        return raise_alerts(
            redis_client,
            test_settings,
            team_id="team-alerts",
            administrators=["admin@shop.example"],
            report=broken,
            transitions=transitions,
            hints=HINTS,
            checked_at=AT,
            since=since,
            publish=published.append,
        )

    first, retry = run("2026-11-28T05:20:00"), run("2026-11-28T05:20:00")
    assert (first.events, first.emailed) == (2, True)
    assert (retry.events, retry.emailed) == (2, False)
    assert [e.event_id for e in published[:2]] == [e.event_id for e in published[2:]]
    entries = submission_entries(redis_client)
    assert len(entries) == 1
    message = OutboundMessage.from_stream_fields(entries[0][1])
    assert message.recipients == ["admin@shop.example"]
    assert message.team_id == test_settings.notifications.team_id  # platform mail: not billed
    assert run("2026-11-28T06:20:00").emailed  # recovered in between, broke again
    assert len(submission_entries(redis_client)) == 2


@pytest.mark.integration
def test_no_transition_no_event_and_no_administrator_no_email(
    redis_client: Any, test_settings: Settings
) -> None:
    published: list[DomainCheckEvent] = []
    broken = report(spf="fail")
    common: dict[str, Any] = {
        "team_id": "team-alerts",
        "report": broken,
        "hints": HINTS,
        "checked_at": AT,
        "since": "never",
        "publish": published.append,
    }
    none = raise_alerts(redis_client, test_settings, administrators=["a@b.example"],
                        transitions=[], **common)  # fmt: skip
    assert (none.events, none.emailed, published) == (0, False, [])
    transitions = find_transitions({"spf": "pass"}, broken, was_ready=False)
    lonely = raise_alerts(redis_client, test_settings, administrators=[],
                          transitions=transitions, **common)  # fmt: skip
    assert (lonely.events, lonely.emailed) == (1, False)
    assert published[0].record == "spf" and published[0].team_id == "team-alerts"
    assert not submission_entries(redis_client)
