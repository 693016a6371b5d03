"""Daily DMARC digest: one email per team to its Administrators, through our own MTA.

The digest is read from the dbt mart fct_dmarc_daily and sent as platform mail with
kibamail.system_mail.send_system_email (the one way the platform mails people: queued on
the MTA's durable intake under the platform team, so no customer is billed for it). Its
guard key per team and day means a retried run never mails a team twice.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from typing import Any

from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from kibamail.system_mail import send_system_email

GUARD_TTL_SECONDS = 7 * 24 * 3600
DIGEST_TAG = "dmarc-digest"


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
    for (
        team_id,
        domain,
        messages,
        passed,
        dkim,
        spf,
        quarantined,
        rejected,
        sources,
        policy,
    ) in rows:
        digests[team_id].append(
            DomainDigest(
                domain,
                int(messages),
                int(passed),
                int(dkim),
                int(spf),
                int(quarantined),
                int(rejected),
                int(sources),
                policy or "",
            )
        )
    return dict(digests)


def digest_subject(day: date) -> str:
    return f"DMARC digest {day.isoformat()}"


def render_digest(day: date, digests: list[DomainDigest]) -> str:
    """The digest's plain-text body: one line per domain."""
    lines = [f"DMARC digest for {day.isoformat()} (UTC)", ""]
    for item in digests:
        lines.append(
            f"{item.domain}: {item.messages} messages from {item.sources} sources, "
            f"{item.pass_rate:.1%} DMARC pass, DKIM aligned {item.dkim_aligned}, "
            f"SPF aligned {item.spf_aligned}, quarantined {item.quarantined}, "
            f"rejected {item.rejected} (policy p={item.policy or 'none'})"
        )
    return "\n".join(lines) + "\n"


def team_administrators(database_url: str) -> dict[str, list[str]]:
    """team id -> Administrator addresses, from the API's database."""
    from api.db import make_engine, make_sessionmaker
    from api.services.accounts import administrator_emails

    engine = make_engine(database_url)
    try:
        with make_sessionmaker(engine)() as session:
            return administrator_emails(session)
    finally:
        engine.dispose()


def send_digests(
    redis: Any,
    settings: Settings,
    digests: dict[str, list[DomainDigest]],
    admins: dict[str, list[str]],
    day: date,
) -> dict[str, str]:
    """Queue one digest per team; returns team -> 'sent' | 'already_sent' | 'no_admins'."""
    outcome: dict[str, str] = {}
    for team_id, team_digests in sorted(digests.items()):
        recipients = sorted(set(admins.get(team_id, [])))
        if not recipients:
            outcome[team_id] = "no_admins"
            continue
        message_id = send_system_email(
            redis,
            settings,
            to=recipients,
            subject=digest_subject(day),
            text=render_digest(day, team_digests),
            tags=[DIGEST_TAG],
            guard_key=RedisKeys.dmarc_digest_sent(team_id, day.isoformat()),
            guard_ttl_seconds=GUARD_TTL_SECONDS,
        )
        outcome[team_id] = "sent" if message_id else "already_sent"
    return outcome
