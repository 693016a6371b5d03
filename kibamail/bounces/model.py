"""The contract of bounce handling: kinds of reply, reasons, and what each one makes us do.

A reason's action is data (``taxonomy.toml``); the names are fixed here so events,
ClickHouse rows and the API agree on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Kind(StrEnum):
    """What a received message (or one recipient of it) is."""

    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    AUTO_REPLY = "auto_reply"
    DELIVERED = "delivered"
    DELAYED = "delayed"
    NONE = "none"  # not a report at all


class Action(StrEnum):
    """What happens to the recipient address.

    ``retry`` means the address stays mailable (a later message may go through);
    ``fix_our_side`` means the failure is about us (IP, reputation, authentication,
    content): the address stays mailable and the sender's reputation takes a signal.
    """

    SUPPRESS = "suppress"
    RETRY = "retry"
    FIX_OUR_SIDE = "fix_our_side"


class Reason(StrEnum):
    """Why a message was not delivered (or what a non-bounce reply is)."""

    USER_UNKNOWN = "user_unknown"
    HOST_UNKNOWN = "host_unknown"  # no such domain, no MX/A
    NULL_MX = "null_mx"  # RFC 7505: the domain accepts no mail
    HAS_MOVED = "has_moved"
    MAILBOX_FULL = "mailbox_full"
    MESSAGE_TOO_BIG = "message_too_big"
    EXCEED_LIMIT = "exceed_limit"  # too many recipients / message size policy of the site
    BLOCKED = "blocked"  # our IP: blocklist, no PTR, reputation
    BAD_REPUTATION = "bad_reputation"
    SPAM_DETECTED = "spam_detected"
    CONTENT_ERROR = "content_error"
    POLICY_VIOLATION = "policy_violation"
    AUTH_FAILURE = "auth_failure"  # SPF / DKIM / DMARC
    REQUIRE_PTR = "require_ptr"
    SECURITY_ERROR = "security_error"  # TLS required, authentication required
    RATE_LIMITED = "rate_limited"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    EXPIRED = "expired"  # gave up after retries
    NETWORK_ERROR = "network_error"
    SYSTEM_ERROR = "system_error"
    SYSTEM_FULL = "system_full"
    SUSPENDED = "suspended"  # mailbox disabled / inactive
    SENDER_REJECTED = "sender_rejected"
    NO_RELAYING = "no_relaying"
    VIRUS_DETECTED = "virus_detected"
    SYNTAX_ERROR = "syntax_error"  # protocol: our commands
    NOT_RFC_COMPLIANT = "not_rfc_compliant"
    FILTERED = "filtered"  # the recipient's own filter refused it
    MAILER_ERROR = "mailer_error"  # a local program/pipe failed at the recipient
    ON_HOLD = "on_hold"  # a failure whose cause the report does not say
    UNDETERMINED = "undetermined"
    # Not failures:
    COMPLAINT = "complaint"
    NOT_SPAM = "not_spam"  # ARF not-spam: un-suppress
    AUTO_REPLY = "auto_reply"
    DELIVERED = "delivered"
    DELAYED = "delayed"


@dataclass(frozen=True)
class Verdict:
    """The classifier's answer for one outcome; ``rule`` names the taxonomy rule used."""

    reason: Reason
    action: Action
    status: str = ""  # enhanced status code, "5.1.1"
    rule: str = ""

    @property
    def suppress(self) -> bool:
        return self.action is Action.SUPPRESS


@dataclass
class Finding:
    """One recipient of one received message, as every consumer sees it."""

    recipient: str
    kind: Kind
    reason: Reason
    action: Action
    status: str = ""
    diagnostic: str = ""
    smtp_code: int = 0
    # Attribution, strongest first: the signed return path's local part
    # (``bounces+<ref>.<mac>``), the platform's id (``X-Kibamail-Message-ID``),
    # the original Message-ID header.
    return_path: str = ""
    platform_message_id: str = ""
    message_id: str = ""
    feedback_type: str = ""  # ARF Feedback-Type (abuse, fraud, virus, not-spam, other)
    remote_mta: str = ""
    source_format: str = ""  # which parser read it (rfc3464, exim, arf, ...)
    rule: str = ""

    @property
    def suppress(self) -> bool:
        return self.action is Action.SUPPRESS


@dataclass
class Report:
    """Everything found in one received message."""

    kind: Kind
    findings: list[Finding] = field(default_factory=list)
    source_format: str = ""
    warnings: list[str] = field(default_factory=list)
