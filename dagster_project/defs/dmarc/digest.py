"""Daily DMARC digest: one email per team to its Administrators, through our own MTA.

The digest is read from the dbt mart fct_dmarc_daily and queued with mta.intake.submit
(the same durable hand-over the API uses). A Redis set-if-absent guard per team and day
means a retried run never mails a team twice.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from email.message import EmailMessage
from typing import Any

from pipelines.contracts import MessageMapping, OutboundMessage, RedisKeys, TrafficKind

GUARD_TTL_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class DomainDigest:
    domain: str
    messages: int
    dmarc_pass: int
    dkim_aligned: int
    spf_aligned: int
    quarantined: int
    rejected: int
    sources: int
    policy: str

    @property
    def pass_rate(self) -> float:
        return self.dmarc_pass / self.messages if self.messages else 0.0


def load_digests(client: Any, database: str, day: date) -> dict[str, list[DomainDigest]]:
    rows = client.query(
        "SELECT team_id, domain, sum(messages), sum(dmarc_pass), sum(dkim_aligned),"
        " sum(spf_aligned), sum(disposition_quarantine), sum(disposition_reject),"
        " uniqExact(source_ip), any(published_policy)"
        f" FROM {database}.fct_dmarc_daily WHERE day = {{day:Date}}"
        " GROUP BY team_id, domain ORDER BY team_id, domain",
        parameters={"day": day},
    ).result_rows
    digests: dict[str, list[DomainDigest]] = defaultdict(list)
    for team_id, domain, *numbers, policy in rows:
        digests[team_id].append(DomainDigest(domain, *(int(n) for n in numbers), policy or ""))
    return dict(digests)


def render_digest(
    sender: str, recipients: list[str], day: date, digests: list[DomainDigest], message_id: str
) -> bytes:
    lines = [f"DMARC digest for {day.isoformat()} (UTC)", ""]
    for item in digests:
        lines.append(
            f"{item.domain}: {item.messages} messages from {item.sources} sources, "
            f"{item.pass_rate:.1%} DMARC pass, DKIM aligned {item.dkim_aligned}, "
            f"SPF aligned {item.spf_aligned}, quarantined {item.quarantined}, "
            f"rejected {item.rejected} (policy p={item.policy or 'none'})"
        )
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = f"DMARC digest {day.isoformat()}"
    message["Message-ID"] = f"<{message_id}>"
    message.set_content("\n".join(lines) + "\n")
    return message.as_bytes()


def team_administrators(database_url: str) -> dict[str, list[str]]:
    """team id -> Administrator addresses, from the API's database."""
    from sqlalchemy import select

    from api.db import make_engine, make_sessionmaker
    from api.models.accounts import Membership, Role, User

    engine = make_engine(database_url)
    try:
        with make_sessionmaker(engine)() as session:
            rows = session.execute(
                select(Membership.team_id, User.email)
                .join(User, User.id == Membership.user_id)
                .where(Membership.role == Role.ADMIN.value)
            ).all()
    finally:
        engine.dispose()
    admins: dict[str, list[str]] = defaultdict(list)
    for team_id, email in rows:
        admins[team_id].append(email)
    return dict(admins)


def send_digests(
    redis: Any,
    digests: dict[str, list[DomainDigest]],
    admins: dict[str, list[str]],
    day: date,
    sender: str,
) -> dict[str, str]:
    """Queue one digest per team; returns team -> 'sent' | 'already_sent' | 'no_admins'."""
    from mta.intake import submit

    outcome: dict[str, str] = {}
    sender_domain = sender.rsplit("@", 1)[-1]
    for team_id, team_digests in sorted(digests.items()):
        recipients = sorted(set(admins.get(team_id, [])))
        if not recipients:
            outcome[team_id] = "no_admins"
            continue
        guard = RedisKeys.dmarc_digest_sent(team_id, day.isoformat())
        if not redis.set(guard, "1", nx=True, ex=GUARD_TTL_SECONDS):
            outcome[team_id] = "already_sent"
            continue
        message_id = f"{uuid.uuid4().hex}@{sender_domain}"
        data = render_digest(sender, recipients, day, team_digests, message_id)
        message = OutboundMessage(
            message_id=message_id,
            team_id=team_id,
            kind=TrafficKind.TRANSACTIONAL,
            mail_from=sender,
            recipients=recipients,
            data=data,
            source="api",
        )
        try:
            submit(redis, message, MessageMapping(team_id=team_id, tags=["dmarc-digest"]))
        except Exception:
            redis.delete(guard)  # not queued: let the retry send it
            raise
        outcome[team_id] = "sent"
    return outcome
