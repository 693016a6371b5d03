"""The Redis key layout shared by the API, the MTA and the pipelines.

Every Redis key any process reads or writes is formatted here, so a key's format
changes in one place. The writer of each key is named in its docstring.

Cluster layout (docs/production.md, "Redis beyond one node"): keys are spread over
``SLOT_GROUPS`` fixed slot groups, each with a hash tag (``group_tag``) whose slot lies in
its own 1/16 of the 16384 slots, so the groups land evenly on the masters whatever the
slot map. A team lives in one group (``slot_group``): every team-scoped key embeds the
team's tag as its first ``{...}``, and so do the message-scoped keys written in the same
MULTI/Lua call as the team's stream entry, so every multi-key script and transaction stays
in one slot. The MTA's submission stream, outbox and retry schedule are one key per group.
Single-node Redis uses the same names (one layout everywhere).
"""

from __future__ import annotations

import zlib
from functools import lru_cache
from typing import ClassVar, Final

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

# Fixed: changing it remaps every key (a resharding of groups is a data migration).
SLOT_GROUPS: Final = 16
_SLOTS_PER_GROUP: Final = REDIS_CLUSTER_HASH_SLOTS // SLOT_GROUPS


def _find_group_tag(group: int) -> str:
    """The first ``{g<group>-<n>}`` whose CRC16 slot lies in the group's slot range."""
    n = 0
    while key_slot(f"g{group}-{n}".encode()) // _SLOTS_PER_GROUP != group:
        n += 1
    return "{" + f"g{group}-{n}" + "}"


_GROUP_TAGS: Final = tuple(_find_group_tag(g) for g in range(SLOT_GROUPS))


def group_tag(group: int) -> str:
    """The hash tag (braces included) of a slot group."""
    return _GROUP_TAGS[group]


def _checked_id(value: str) -> str:
    if "{" in value or "}" in value:
        raise ValueError(f"an id in a Redis key may not contain braces: {value!r}")
    return value


@lru_cache(maxsize=65536)
def slot_group(team_id: str) -> int:
    """The team's slot group (stable: CRC32 of the id; ids with braces are refused)."""
    return zlib.crc32(_checked_id(team_id).encode()) % SLOT_GROUPS


def team_tag(team_id: str) -> str:
    """The hash tag of the team's group: the first ``{...}`` of its keys."""
    return _GROUP_TAGS[slot_group(team_id)]


def owner_tag(owner: int | str) -> str:
    """The tag of a slot group (int) or of a team id (str)."""
    return _GROUP_TAGS[owner] if isinstance(owner, int) else team_tag(owner)


def _ts(team_id: str) -> str:
    """``{tag}:<team_id>``: the team-scoped prefix of a key."""
    return f"{team_tag(team_id)}:{team_id}"


class RedisKeys:
    """Redis key formats. Call the methods; never format these strings elsewhere."""

    # Consumer group on every submission stream (one stream per slot group, below).
    SUBMISSION_GROUP: ClassVar[str] = "mta-delivery"

    @staticmethod
    def submission_stream(group: int) -> str:
        """Stream of OutboundMessage of one slot group's teams, written by kibamail.intake
        (team_submission_stream), consumed by the MTA's queue workers (SUBMISSION_GROUP)."""
        return f"mta:submissions:{group_tag(group)}"

    @staticmethod
    def team_submission_stream(team_id: str) -> str:
        """The submission stream of the team's slot group."""
        return RedisKeys.submission_stream(slot_group(team_id))

    @staticmethod
    def submission_streams() -> list[str]:
        """Every submission stream, by group number."""
        return [RedisKeys.submission_stream(g) for g in range(SLOT_GROUPS)]

    @staticmethod
    def message_mapping(team_id: str, message_id: str) -> str:
        """messageId -> MessageMapping JSON, written at send time (with the team's stream
        entry), read by correlation (whose events carry the team id)."""
        return f"msgmap:{_ts(team_id)}:{message_id}"

    @staticmethod
    def broadcast_sent(team_id: str, broadcast_id: str, contact_id: str) -> str:
        """Set-if-absent guard so a retried broadcast job never mails a contact twice."""
        return f"BROADCAST:{_ts(team_id)}:{broadcast_id}:{contact_id}"

    @staticmethod
    def team_paused(team_id: str) -> str:
        """Pause flag (JSON reason) written by the API or the scoring dataflow."""
        return f"team:{_ts(team_id)}:paused"

    # Every team's pause flag (SCAN match, every master on a cluster), for the operators'
    # list (kibamail.team_pauses); team_of_paused_key reads the team back.
    TEAM_PAUSED_PATTERN: ClassVar[str] = "team:{*}:*:paused"

    @staticmethod
    def team_of_paused_key(key: str) -> str:
        """'team:{tag}:<id>:paused' -> '<id>'."""
        return key.removeprefix("team:").removesuffix(":paused").split("}:", 1)[-1]

    @staticmethod
    def team_pause_audit(team_id: str) -> str:
        """List of JSON audit entries (lift, confirm, review request) of a team's pauses,
        newest first, capped (kibamail.team_pauses)."""
        return f"team:{_ts(team_id)}:pause_audit"

    @staticmethod
    def team_recent_subjects(team_id: str) -> str:
        """The subjects of a team's last few transactional SMTP submissions (capped list,
        expiring; written by mta.commit): a pause's sample evidence."""
        return f"team:{_ts(team_id)}:recent_subjects"

    @staticmethod
    def scoring_reset(team_id: str) -> str:
        """Unix time a lifted pause reset the team's bulk-scoring window: the scoring
        dataflow ignores submissions from before it (kibamail.team_pauses)."""
        return f"team:{_ts(team_id)}:scoring_reset"

    @staticmethod
    def domain_ready(team_id: str, domain: str) -> str:
        """'1' when SPF/DKIM/DMARC pass for a team's sending domain (only
        deliverability.domain_checks.set_ready writes it). Per team: two teams may add the
        same name, and one team's checks must never clear or grant the other's."""
        return f"domain:{_ts(team_id)}:{domain.lower()}:ready"

    @staticmethod
    def smtp_credential(username: str) -> str:
        """Hash of an SMTP credential: team id, argon2/sha256 hash, revoked flag."""
        return f"smtpcred:{username}"

    @staticmethod
    def api_key_team(key_hash: str) -> str:
        """The team id of an API key by sha256 of the key ('' for an unknown or revoked
        key), written by api.deps: a key's team never changes, so processes cache it and
        then address the key's team-tagged keys below."""
        return f"apikeyteam:{key_hash}"

    @staticmethod
    def api_key(team_id: str, key_hash: str) -> str:
        """API key record cache (JSON, api.deps) by sha256 of the key, in its team's slot:
        the send script checks it in the same call as the team's keys."""
        return f"apikey:{_ts(team_id)}:{key_hash}"

    @staticmethod
    def api_rate_bucket(team_id: str, key_hash: str) -> str:
        """Per-API-key token bucket (api.services.ratelimit)."""
        return f"apirate:{_ts(team_id)}:{key_hash[:32]}"

    @staticmethod
    def api_key_used(team_id: str, key_hash: str) -> str:
        """Set-if-absent marker throttling an API key's last_used_at writes."""
        return f"apikey-used:{_ts(team_id)}:{key_hash[:24]}"

    @staticmethod
    def marketing_suppression(team_id: str) -> str:
        """Addresses that unsubscribed from a team's marketing mail (api.routers.unsubscribe):
        broadcasts and marketing-kind mail skip them, transactional mail still reaches them."""
        return f"suppress:{_ts(team_id)}:marketing"

    @staticmethod
    def suppression(team_id: str) -> str:
        """Set of suppressed recipient addresses per team."""
        return f"suppress:{_ts(team_id)}"

    @staticmethod
    def rate_bucket(team_id: str, window: str) -> str:
        """Per-team rate state; window "sec" and "YYYYMMDD" are the send budget's (below),
        "reputation" the MTA's delivery pacing slot (mta.reputation)."""
        return f"rate:{_ts(team_id)}:{window}"

    @staticmethod
    def team_send_bucket(team_id: str) -> str:
        """Hash tokens, ts: the team's send token bucket, charged per recipient by every
        intake (kibamail.team_budget)."""
        return RedisKeys.rate_bucket(team_id, "sec")

    @staticmethod
    def team_daily_sent(team_id: str, day: str) -> str:
        """Recipients a team was charged on one UTC day (YYYYMMDD), every intake together
        (kibamail.team_budget)."""
        return RedisKeys.rate_bucket(team_id, day)

    @staticmethod
    def warmup_counter(source_ip: str, provider_group: str, window: str) -> str:
        """Messages one source IP sent to one provider group in a day or an hour window
        (mta.warmup takes both in one Lua call: the pair is the hash tag, one slot)."""
        return f"warmup:{{{_checked_id(source_ip)}|{_checked_id(provider_group)}}}:{window}"

    @staticmethod
    def reputation_throttle(scope: str, key: str) -> str:
        """Throttle decision from reputation signals (scope: team | ip_provider |
        bulk_score). The team scopes (key = team id) carry the team's tag: the send
        scripts read the bulk score with the team's other keys."""
        if scope in ("team", "bulk_score"):
            return f"throttle:{team_tag(key)}:{scope}:{key}"
        return f"throttle:{scope}:{key}"

    @staticmethod
    def idempotency(team_id: str, key: str) -> str:
        return f"idem:{_ts(team_id)}:{key}"

    @staticmethod
    def dmarc_digest_sent(team_id: str, day: str) -> str:
        """Set-if-absent guard so a retried daily DMARC digest run mails a team once."""
        return f"dmarcdigest:{_ts(team_id)}:{day}"

    @staticmethod
    def notification_sent(purpose: str, ref: str) -> str:
        """Set-if-absent guard so a retried API request sends a platform email once
        (purpose e.g. team-invite, double-opt-in; ref = the invitation/contact id)."""
        return f"notified:{purpose}:{ref}"

    @staticmethod
    def platform_mail_count(purpose: str, team_id: str, window: str) -> str:
        """Counter of platform emails (purpose as above) a team's actions triggered in one
        fixed window (e.g. h:<hour number>, d:<day number>); written by
        api.services.notifications to cap them."""
        return f"platmail:{_ts(team_id)}:{purpose}:{window}"

    # MTA internals (shared by every MTA process/host), one key per slot group.
    EVENT_OUTBOX_GROUP: ClassVar[str] = "mta-outbox"

    @staticmethod
    def retry_schedule(group: int) -> str:
        """Sorted set of a group's retry/held job ids scored by due time (unix seconds)."""
        return f"mta:retry:{group_tag(group)}"

    @staticmethod
    def retry_schedules() -> list[str]:
        return [RedisKeys.retry_schedule(g) for g in range(SLOT_GROUPS)]

    @staticmethod
    def event_outbox(group: int) -> str:
        """Durable outbox of a group's events (fields: topic, key, value) drained to Kafka
        (consumer group EVENT_OUTBOX_GROUP)."""
        return f"mta:outbox:{group_tag(group)}"

    @staticmethod
    def event_outboxes() -> list[str]:
        return [RedisKeys.event_outbox(g) for g in range(SLOT_GROUPS)]

    # Ids of dead letters already replayed (kibamail.dead_letters: replay once unless forced).
    DEAD_LETTERS_REPLAYED: ClassVar[str] = "deadletters:replayed"
    # The API's tracking events (opens, clicks, unsubscribes), XADDed before the hit is
    # answered, drained to Kafka by `kibamail api outbox` (kibamail.outbox). One global
    # stream: only single-key XADDs write it, so it lives on one master of a cluster.
    API_EVENT_OUTBOX: ClassVar[str] = "api:outbox"
    API_EVENT_OUTBOX_GROUP: ClassVar[str] = "api-outbox"

    @staticmethod
    def retry_job(owner: int | str, job_id: str) -> str:
        """Hash with the OutboundMessage stream fields of a scheduled retry/held job
        (owner: its slot group or team id; the tag is the same)."""
        return f"mta:retry:{owner_tag(owner)}:{job_id}"

    @staticmethod
    def delivery_progress(owner: int | str, entry_id: str) -> str:
        """Hash recipient -> final status for a stream entry being delivered (crash resume);
        owner: the entry's slot group or team id."""
        return f"mta:progress:{owner_tag(owner)}:{entry_id}"

    @staticmethod
    def return_path(owner: int | str, ref: str) -> str:
        """Message id a signed return-path ref stands for (kibamail.report_tokens); written
        with the delivered outcome (mta.commit), expires after the report window; owner:
        the message's slot group or team id."""
        return f"mta:rp:{owner_tag(owner)}:{ref}"

    @staticmethod
    def sent_recipients(owner: int | str, message_id: str) -> str:
        """Hash of a message's recipients a remote MX accepted: ``team``, ``kind`` and
        ``rcpt:<address>`` -> return-path ref; written by mta.commit with the outcome, read
        by mta.inbound to refuse reports about recipients the message never had; owner:
        the message's slot group or team id."""
        return f"mta:sent:{owner_tag(owner)}:{message_id}"

    @staticmethod
    def client_message_id(header_id: str) -> str:
        """Set of platform ids whose rendered message carried this client-chosen Message-ID
        (two teams may share one); written with the delivered outcome (mta.commit), read by
        mta.inbound to attribute a report that quotes only the Message-ID. Shared across
        teams, so it has no tag: written by its own single-key commands (SADD, EXPIRE)
        outside the outcome's transaction."""
        return f"mta:msgid:{header_id}"

    @staticmethod
    def soft_bounces(team_id: str, address: str) -> str:
        """Hash (count, first, last) of an address's soft bounces for a team; a delivery
        deletes it, it expires after the window (mta.soft_bounces)."""
        return f"mta:softbounce:{_ts(team_id)}:{address.lower()}"

    @staticmethod
    def suppression_reasons(team_id: str) -> str:
        """Hash address -> JSON {reason, source} for suppressions the MTA made (bounces,
        complaints, the soft-bounce window); an ARF not-spam report lifts only those."""
        return f"suppress:{_ts(team_id)}:reasons"

    @staticmethod
    def fix_our_side(team_id: str, day: str) -> str:
        """Hash reason -> count of a team's fix_our_side outcomes (blocks, policy,
        authentication) on a UTC day: a reputation input (mta.reputation)."""
        return f"mta:fixours:{_ts(team_id)}:{day}"

    @staticmethod
    def report_seen(team_id: str, message_id: str, recipient: str, kind: str) -> str:
        """Marker that an inbound report (kind: bounced | complained) was recorded once."""
        return f"mta:report:{_ts(team_id)}:{kind}:{message_id}:{recipient.lower()}"

    @staticmethod
    def dkim_key(team_id: str, domain: str) -> str:
        """Hash per team and sending domain written by the API: selector, algorithm,
        private_key (PEM for rsa-sha256, base64 raw 32-byte seed for ed25519-sha256). The
        MTA signs a team's mail only with that team's key."""
        return f"dkim:{_ts(team_id)}:{domain.lower()}"

    @staticmethod
    def team_smtp_credentials(team_id: str) -> str:
        """Set of SMTP credential usernames of a team."""
        return f"team:{_ts(team_id)}:smtpcreds"

    @staticmethod
    def auth_failures(client_ip: str) -> str:
        """Counter of recent failed SMTP AUTH attempts from one IP (brute-force lockout);
        expires after the lockout window, never reset by a success (mta.brute_force)."""
        return f"authfail:{client_ip}"

    @staticmethod
    def auth_credential_failures(username_digest: str) -> str:
        """Counter of recent failed SMTP AUTH attempts on one username (sha256 hex of it):
        slows guessing from many IPs; its owner's successful login clears it."""
        return f"authfail:cred:{username_digest}"

    @staticmethod
    def login_failures(scope: str, subject: str) -> str:
        """Counter of failed sign-in attempts in a fixed window (api.services.login_guard);
        scope: password-account | password-ip | 2fa-account | 2fa-ip, subject: a sha256 of
        the address, a user id or a client IP."""
        return f"loginfail:{scope}:{subject}"

    @staticmethod
    def totp_used(user_id: str, step: int) -> str:
        """Marker that a user's TOTP code of one 30 s time step was accepted (set-if-absent:
        a code signs in once)."""
        return f"totpused:{user_id}:{step}"
