"""Sender authorization: a team sends only from domains it has verified.

On submission the authenticated credential's team must hold the ready flag
(``RedisKeys.domain_ready(team, domain)``) for the MAIL FROM domain (checked at MAIL) and
for every domain named in the From: header (checked at DATA, header block only);
anything else is refused with ``553 5.7.1`` before it is queued. The platform's
notification domain (``settings.notifications``) belongs to platform mail alone: any
other team is refused on submission and failed on delivery, and never signed for.
Readiness on the delivery path (every intake) is ``DomainReady``, per team as well.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from email.header import decode_header, make_header

from kibamail.redis_keys import RedisKeys
from kibamail.settings import Settings
from kibamail.system_mail import sender_address

from .policies import ACCEPT, REGISTRY, Policy, PolicyContext, Verdict, redis_calls

# Every "@domain" in a From: value: also those in display names and comments, so a
# "ceo@victim.test" <me@own.test> display name cannot borrow someone else's domain.
_AT_DOMAIN = re.compile(r"@([^\s<>,;:\"()\[\]@\\]+)")
_FROM_FIELD = re.compile(rb"^from:", re.IGNORECASE)


@dataclass(frozen=True)
class PlatformSender:
    """The platform team and its notification domain (and the domain's subdomains)."""

    team_id: str
    domain: str

    @classmethod
    def from_settings(cls, settings: Settings) -> PlatformSender:
        domain = sender_address(settings).rsplit("@", 1)[1].lower()
        return cls(settings.notifications.team_id, domain)

    def reserved_for(self, team_id: str, domain: str) -> bool:
        """True when ``team_id`` may not use ``domain``: it is the platform's."""
        domain = domain.lower().rstrip(".")
        covered = domain == self.domain or domain.endswith(f".{self.domain}")
        return covered and team_id != self.team_id


def header_from_domains(data: bytes) -> list[str]:
    """The domains named in the From: field (folded lines joined, encoded words decoded),
    lower case, in order, without duplicates. Reads the header block only."""
    head = data.partition(b"\r\n\r\n")[0]
    value: list[bytes] = []
    inside = False
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if inside:
                value.append(line)
            continue
        if inside:
            break
        if _FROM_FIELD.match(line):
            inside = True
            value.append(line[5:])
    raw = b" ".join(value).decode("utf-8", "replace")
    texts = [raw]
    with contextlib.suppress(ValueError, LookupError):  # undecodable: raw text still checked
        texts.append(str(make_header(decode_header(raw))))
    found: list[str] = []
    for text in texts:
        for match in _AT_DOMAIN.finditer(text):
            domain = match.group(1).lower().rstrip(".")
            if domain and domain not in found:
                found.append(domain)
    return found


class SenderAuthorized(Policy):
    """553 5.7.1 for a sender domain the team has not verified; the platform's domain
    is refused to every other team, on submission and again on delivery."""

    name = "sender_authorized"
    stages = ("submission", "delivery")

    async def check(self, ctx: PolicyContext) -> Verdict:
        domains = [ctx.sender_domain, *(d for d in ctx.from_domains if d != ctx.sender_domain)]
        platform = self.platform
        if platform is not None:
            for domain in domains:
                if platform.reserved_for(ctx.team_id, domain):
                    text = f"{domain} is reserved for the platform's own mail"
                    if ctx.stage == "delivery":
                        return Verdict("fail", 553, "5.7.1", text)
                    return Verdict("reject", 553, "5.7.1", text)
        if ctx.stage != "submission" or ctx.authenticated is None:
            return ACCEPT  # API and broadcast intakes check the domain before queueing
        if ctx.header_checked and not ctx.from_domains:
            return Verdict("reject", 553, "5.7.1", "From header names no sender address")
        keys = [RedisKeys.domain_ready(ctx.team_id, d) for d in domains if d]
        if not keys:
            return Verdict("reject", 553, "5.7.1", "Sender address has no domain")
        flags = await redis_calls(ctx, lambda pipe: [pipe.get(key) for key in keys])
        for domain, flag in zip([d for d in domains if d], flags, strict=True):
            if flag not in (b"1", "1"):
                text = f"Sender domain {domain} is not a verified domain of this account"
                return Verdict("reject", 553, "5.7.1", text)
        return ACCEPT


REGISTRY[SenderAuthorized.name] = SenderAuthorized
