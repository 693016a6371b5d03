"""When a sender-domain check starts failing: an event per transition and ONE email.

A transition is a record whose last settled status was ``pass`` and is now ``fail``,
plus the pseudo-record ``ready`` when a ready domain stops being ready. ``unknown``
(DNS trouble) settles nothing: the previous status is kept, so a timeout between two
passing checks is no transition and a record that keeps failing alerts once. Event ids
are derived from domain, record, transition and check time, and the email carries a
guard key per domain and failure episode (``since`` = when it last passed), so a
retried run produces the same events and mails once; a domain that recovers and breaks
again mails again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from deliverability.domain_checks import DomainCheckReport, Status
from kibamail.contracts import DomainCheckEvent, Topic, serialize
from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from kibamail.system_mail import send_system_email

READY = "ready"
LABELS = {
    "spf": "SPF",
    "dkim": "DKIM (RSA)",
    "dkim_ed25519": "DKIM (ed25519)",
    "dmarc": "DMARC",
    "mx": "MX",
    "return_path": "Return path",
    "tracking": "Tracking domain",
    READY: "Ready to send",
}


@dataclass(frozen=True, slots=True)
class Transition:
    record: str
    previous: str
    current: Status
    reason: str


@dataclass(frozen=True, slots=True)
class PublishHint:
    """The DNS record the customer must publish for one check."""

    type: str
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class AlertOutcome:
    events: int
    emailed: bool


def settled_status(previous: str | None, current: Status) -> str | None:
    """The status to remember: an ``unknown`` result keeps what was known before."""
    return previous if current == "unknown" else current


def find_transitions(
    previous: Mapping[str, str | None], report: DomainCheckReport, was_ready: bool
) -> list[Transition]:
    transitions = [
        Transition(name, "pass", "fail", "; ".join(check.reasons) or "check failed")
        for name, check in report.checks.items()
        if previous.get(name) == "pass" and check.status == "fail"
    ]
    if was_ready and report.failing:
        reason = "required checks failing: " + ", ".join(report.failing)
        transitions.append(Transition(READY, "pass", "fail", reason))
    return transitions


def event_id(domain: str, transition: Transition, checked_at: datetime, team_id: str = "") -> str:
    """Deterministic per team, domain, transition and check time: two teams that added the
    same name get separate events (the sinks collapse rows by event id)."""
    key = f"{domain}|{transition.record}|{transition.previous}>{transition.current}|"
    if team_id:
        key = f"{team_id}|{key}"
    return hashlib.sha256((key + checked_at.isoformat()).encode()).hexdigest()[:32]


def build_events(
    team_id: str, domain: str, transitions: list[Transition], checked_at: datetime
) -> list[DomainCheckEvent]:
    return [
        DomainCheckEvent(
            event_id=event_id(domain, t, checked_at, team_id),
            team_id=team_id,
            occurred_at=checked_at,
            domain=domain,
            record=t.record,
            previous_status=t.previous,
            current_status=t.current,
            reason=t.reason[:1000],
            checked_at=checked_at,
        )
        for t in transitions
    ]


def alert_guard_key(
    domain: str, transitions: list[Transition], since: str, team_id: str = ""
) -> str:
    """Once per team and episode: another team with the same name is mailed too."""
    episode = "|".join(sorted(f"{t.record}:{t.previous}>{t.current}" for t in transitions))
    scope = f"{team_id}|{episode}" if team_id else episode
    digest = hashlib.sha256(f"{scope}|{since}".encode()).hexdigest()[:16]
    return RedisKeys.notification_sent("domain-check-failing", f"{domain}:{digest}")


def failed_records(report: DomainCheckReport, transitions: list[Transition]) -> list[str]:
    """Records to explain: those that just broke, and every failing required one when the
    domain stopped being ready (it may never have had a passing check on record)."""
    records = [t.record for t in transitions if t.record != READY]
    if any(t.record == READY for t in transitions):
        records += [name for name in report.failing if name not in records]
    return records


def render_alert(
    report: DomainCheckReport,
    transitions: list[Transition],
    hints: Mapping[str, PublishHint],
    checked_at: datetime,
) -> tuple[str, str]:
    """Subject and text: which record failed, what was expected, what was found, the fix."""
    domain = report.domain
    failed = failed_records(report, transitions)
    subject = f"{domain}: DNS check failing ({', '.join(LABELS.get(r, r) for r in failed)})"
    lines = [f"The DNS check of {domain} at {checked_at:%Y-%m-%d %H:%M} UTC found a problem.", ""]
    for record in failed:
        check = report.checks[record]
        hint = hints.get(record)
        lines.append(f"{LABELS.get(record, record)}: failing")
        if hint is not None:
            lines.append(f"  expected: {hint.type} record at {hint.name}: {hint.value}")
        elif record == "mx":
            lines.append(f"  expected: an MX record for {domain} that accepts mail")
        found = "; ".join(check.found) if check.found else "nothing"
        lines.append(f"  found:    {found}")
        lines.extend(f"  problem:  {reason}" for reason in check.reasons)
        if hint is not None:
            lines.append(f"  publish:  {hint.name} {hint.type} {hint.value}")
        lines.append("")
    if any(t.record == READY for t in transitions):
        lines.append(
            f"{domain} is no longer ready to send: its messages are held, not dropped, "
            "and go out once the required records (SPF, DKIM, DMARC) pass again."
        )
    else:
        lines.append(f"{domain} can still send, but fix this record to keep deliverability.")
    lines.append("We re-check every hour; you can also verify the domain now in Kibamail.")
    return subject, "\n".join(lines) + "\n"


def raise_alerts(
    redis: Any,
    settings: Settings,
    *,
    team_id: str,
    administrators: list[str],
    report: DomainCheckReport,
    transitions: list[Transition],
    hints: Mapping[str, PublishHint],
    checked_at: datetime,
    since: str,
    publish: Callable[[DomainCheckEvent], None],
) -> AlertOutcome:
    """Publish the events first, then mail; a failure raises so the caller's retry redoes
    both (same event ids, and the guard key keeps the email single)."""
    if not transitions:
        return AlertOutcome(0, False)
    events = build_events(team_id, report.domain, transitions, checked_at)
    for event in events:
        publish(event)
    if not administrators or not failed_records(report, transitions):
        return AlertOutcome(len(events), False)
    subject, text = render_alert(report, transitions, hints, checked_at)
    message_id = send_system_email(
        redis,
        settings,
        to=administrators,
        subject=subject,
        text=text,
        tags=["domain-check-alert"],
        guard_key=alert_guard_key(report.domain, transitions, since, team_id),
    )
    return AlertOutcome(len(events), message_id is not None)


class KafkaEventPublisher:
    """Produces DomainCheckEvents to ``Topic.DOMAIN_CHECKS`` (keyed by domain) and waits
    for the broker's ack: events are rare, and an undelivered one must raise before the
    email goes out and the row is committed, so the retried check produces it again."""

    def __init__(self, settings: Settings, timeout: float = 30.0) -> None:
        from confluent_kafka import Producer

        from kibamail.clients import kafka_producer_config

        self._producer = Producer(kafka_producer_config(settings, **{"linger.ms": 0}))
        self._timeout = timeout
        self.produced = 0

    def __call__(self, event: DomainCheckEvent) -> None:
        errors: list[str] = []

        def on_delivery(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        self._producer.produce(
            Topic.DOMAIN_CHECKS.value,
            value=serialize(event),
            key=event.domain.encode(),
            on_delivery=on_delivery,
        )
        if self._producer.flush(self._timeout) or errors:
            raise RuntimeError(f"domain-check event {event.event_id} not delivered: {errors}")
        self.produced += 1
