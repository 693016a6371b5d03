"""The Redis key layout shared by the API, the MTA and the pipelines.

Every Redis key any process reads or writes is formatted here, so a key's format
changes in one place. The writer of each key is named in its docstring.
"""

from __future__ import annotations

from typing import ClassVar


class RedisKeys:
    """Redis key formats. Call the methods; never format these strings elsewhere."""

    # Stream of OutboundMessage the MTA's queue workers consume (consumer group below).
    SUBMISSION_STREAM: ClassVar[str] = "mta:submissions"
    SUBMISSION_GROUP: ClassVar[str] = "mta-delivery"

    @staticmethod
    def message_mapping(message_id: str) -> str:
        """messageId -> MessageMapping JSON, written at send time, read by correlation."""
        return f"msgmap:{message_id}"

    @staticmethod
    def broadcast_sent(broadcast_id: str, contact_id: str) -> str:
        """Set-if-absent guard so a retried broadcast job never mails a contact twice."""
        return f"BROADCAST:{broadcast_id}:{contact_id}"

    @staticmethod
    def team_paused(team_id: str) -> str:
        """Pause flag (JSON reason) written by the API or the scoring dataflow."""
        return f"team:{team_id}:paused"

    # Every team's pause flag (SCAN match), for the operators' list (kibamail.team_pauses).
    TEAM_PAUSED_PATTERN: ClassVar[str] = "team:*:paused"

    @staticmethod
    def team_pause_audit(team_id: str) -> str:
        """List of JSON audit entries (lift, confirm, review request) of a team's pauses,
        newest first, capped (kibamail.team_pauses)."""
        return f"team:{team_id}:pause_audit"

    @staticmethod
    def team_recent_subjects(team_id: str) -> str:
        """The subjects of a team's last few transactional SMTP submissions (capped list,
        expiring; written by mta.commit): a pause's sample evidence."""
        return f"team:{team_id}:recent_subjects"

    @staticmethod
    def scoring_reset(team_id: str) -> str:
        """Unix time a lifted pause reset the team's bulk-scoring window: the scoring
        dataflow ignores submissions from before it (kibamail.team_pauses)."""
        return f"team:{team_id}:scoring_reset"

    @staticmethod
    def domain_ready(team_id: str, domain: str) -> str:
        """'1' when SPF/DKIM/DMARC pass for a team's sending domain (only
        deliverability.domain_checks.set_ready writes it). Per team: two teams may add the
        same name, and one team's checks must never clear or grant the other's."""
        return f"domain:{team_id}:{domain.lower()}:ready"

    @staticmethod
    def smtp_credential(username: str) -> str:
        """Hash of an SMTP credential: team id, argon2/sha256 hash, revoked flag."""
        return f"smtpcred:{username}"

    @staticmethod
    def api_key(key_hash: str) -> str:
        """API key lookup cache by sha256 of the key."""
        return f"apikey:{key_hash}"

    @staticmethod
    def marketing_suppression(team_id: str) -> str:
        """Addresses that unsubscribed from a team's marketing mail (api.routers.unsubscribe):
        broadcasts and marketing-kind mail skip them, transactional mail still reaches them."""
        return f"suppress:{team_id}:marketing"

    @staticmethod
    def suppression(team_id: str) -> str:
        """Set of suppressed recipient addresses per team."""
        return f"suppress:{team_id}"

    @staticmethod
    def rate_bucket(team_id: str, window: str) -> str:
        """Per-team rate state; window "sec" and "YYYYMMDD" are the send budget's (below),
        "reputation" the MTA's delivery pacing slot (mta.reputation)."""
        return f"rate:{team_id}:{window}"

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
        return f"warmup:{source_ip}:{provider_group}:{window}"

    @staticmethod
    def reputation_throttle(scope: str, key: str) -> str:
        """Throttle decision from reputation signals (scope: team | ip_provider)."""
        return f"throttle:{scope}:{key}"

    @staticmethod
    def idempotency(team_id: str, key: str) -> str:
        return f"idem:{team_id}:{key}"

    @staticmethod
    def dmarc_digest_sent(team_id: str, day: str) -> str:
        """Set-if-absent guard so a retried daily DMARC digest run mails a team once."""
        return f"dmarcdigest:{team_id}:{day}"

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
        return f"platmail:{purpose}:{team_id}:{window}"

    # MTA internals (shared by every MTA process/host).
    # Sorted set of retry/held job ids scored by due time (unix seconds).
    RETRY_SCHEDULE: ClassVar[str] = "mta:retry"
    # Durable outbox of events (fields: topic, key, value) drained to Kafka.
    EVENT_OUTBOX: ClassVar[str] = "mta:outbox"
    EVENT_OUTBOX_GROUP: ClassVar[str] = "mta-outbox"
    # Ids of dead letters already replayed (kibamail.dead_letters: replay once unless forced).
    DEAD_LETTERS_REPLAYED: ClassVar[str] = "deadletters:replayed"
    # The API's tracking events (opens, clicks, unsubscribes), XADDed before the hit is
    # answered, drained to Kafka by `kibamail api outbox` (kibamail.outbox).
    API_EVENT_OUTBOX: ClassVar[str] = "api:outbox"
    API_EVENT_OUTBOX_GROUP: ClassVar[str] = "api-outbox"

    @staticmethod
    def retry_job(job_id: str) -> str:
        """Hash with the OutboundMessage stream fields of a scheduled retry/held job."""
        return f"mta:retry:{job_id}"

    @staticmethod
    def delivery_progress(entry_id: str) -> str:
        """Hash recipient -> final status for a stream entry being delivered (crash resume)."""
        return f"mta:progress:{entry_id}"

    @staticmethod
    def return_path(ref: str) -> str:
        """Message id a signed return-path ref stands for (kibamail.report_tokens); written
        with the delivered outcome (mta.commit), expires after the report window."""
        return f"mta:rp:{ref}"

    @staticmethod
    def sent_recipients(message_id: str) -> str:
        """Hash of a message's recipients a remote MX accepted: ``team``, ``kind`` and
        ``rcpt:<address>`` -> return-path ref; written by mta.commit with the outcome, read
        by mta.inbound to refuse reports about recipients the message never had."""
        return f"mta:sent:{message_id}"

    @staticmethod
    def client_message_id(header_id: str) -> str:
        """Set of platform ids whose rendered message carried this client-chosen Message-ID
        (two teams may share one); written with the delivered outcome (mta.commit), read by
        mta.inbound to attribute a report that quotes only the Message-ID."""
        return f"mta:msgid:{header_id}"

    @staticmethod
    def soft_bounces(team_id: str, address: str) -> str:
        """Hash (count, first, last) of an address's soft bounces for a team; a delivery
        deletes it, it expires after the window (mta.soft_bounces)."""
        return f"mta:softbounce:{team_id}:{address.lower()}"

    @staticmethod
    def suppression_reasons(team_id: str) -> str:
        """Hash address -> JSON {reason, source} for suppressions the MTA made (bounces,
        complaints, the soft-bounce window); an ARF not-spam report lifts only those."""
        return f"suppress:{team_id}:reasons"

    @staticmethod
    def fix_our_side(team_id: str, day: str) -> str:
        """Hash reason -> count of a team's fix_our_side outcomes (blocks, policy,
        authentication) on a UTC day: a reputation input (mta.reputation)."""
        return f"mta:fixours:{team_id}:{day}"

    @staticmethod
    def report_seen(team_id: str, message_id: str, recipient: str, kind: str) -> str:
        """Marker that an inbound report (kind: bounced | complained) was recorded once."""
        return f"mta:report:{team_id}:{kind}:{message_id}:{recipient.lower()}"

    @staticmethod
    def dkim_key(team_id: str, domain: str) -> str:
        """Hash per team and sending domain written by the API: selector, algorithm,
        private_key (PEM for rsa-sha256, base64 raw 32-byte seed for ed25519-sha256). The
        MTA signs a team's mail only with that team's key."""
        return f"dkim:{team_id}:{domain.lower()}"

    @staticmethod
    def team_smtp_credentials(team_id: str) -> str:
        """Set of SMTP credential usernames of a team."""
        return f"team:{team_id}:smtpcreds"

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
