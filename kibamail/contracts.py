"""The event contracts: the ONE place that names topics, event fields and Redis keys.

Producers (API, MTA, Flink jobs) and consumers (Bytewax dataflows, sinks, the MTA's
throttle) all import from here; nothing redefines a topic name or an event's fields.
Every event carries ``event_id`` (unique, the sinks' dedup key), ``team_id`` and
``occurred_at`` (UTC), plus ``event_version`` so consumers can refuse what they
do not understand. ``uv run kibamail contracts schema`` regenerates
``kibamail/schemas/*.json``; a test fails when the committed files drift.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Topic(StrEnum):
    """Kafka topic names (from the product notes; the last four are ours)."""

    MESSAGE_STATUSES = "smtp_messages_statuses"
    CLICKHOUSE_MESSAGES = "clickhouse_smtp_messages"
    EMAIL_OPENS = "smtp_email_opens"
    EMAIL_CLICKS = "smtp_email_clicks"
    CLICKHOUSE_EMAIL_OPENS = "clickhouse_smtp_email_opens"
    CLICKHOUSE_EMAIL_CLICKS = "clickhouse_smtp_email_clicks"
    UNSUBSCRIBES = "smtp_email_unsubscribes"
    SUBMISSION_FEATURES = "smtp_submissions_features"
    REPUTATION_SIGNALS = "reputation_signals"
    TEAM_PAUSES = "team_pauses"
    TEAM_PAUSE_AUDIT = "team_pause_audit"
    DOMAIN_CHECKS = "domain_checks"
    DEAD_LETTER = "kibamail_dead_letter"


class ClickHouseTable(StrEnum):
    """Raw tables the sinks write (database from settings); dbt sources read these."""

    MESSAGE_EVENTS = "raw_message_events"
    EMAIL_OPENS = "raw_email_opens"
    EMAIL_CLICKS = "raw_email_clicks"
    UNSUBSCRIBES = "raw_unsubscribes"
    REPUTATION_SIGNALS = "raw_reputation_signals"
    TEAM_PAUSES = "raw_team_pauses"
    # Every operator/Administrator decision on a pause (migration 0008_team_pause_audit.sql)
    TEAM_PAUSE_AUDIT = "raw_team_pause_audit"
    # DMARC / TLS reporting (deliverability.storage; migration 0003_dmarc.sql)
    DMARC_REPORTS = "raw_dmarc_reports"
    DMARC_RECORDS = "raw_dmarc_records"
    DMARC_FAILURE_REPORTS = "raw_dmarc_failure_reports"
    TLS_REPORTS = "raw_tls_reports"
    # Sender-domain check transitions (migration 0004_domain_checks.sql)
    DOMAIN_CHECKS = "raw_domain_checks"


def new_event_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """Base of every event on a topic."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    EVENT_TYPE: ClassVar[str] = "event"
    VERSION: ClassVar[int] = 1

    event_id: str = Field(default_factory=new_event_id, min_length=1, max_length=64)
    event_version: int = 1
    team_id: str = Field(min_length=1, max_length=64)
    occurred_at: datetime = Field(default_factory=utcnow)


class MessageStatus(StrEnum):
    ACCEPTED = "accepted"
    HELD = "held"
    DEFERRED = "deferred"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    FAILED = "failed"
    EXPIRED = "expired"
    COMPLAINED = "complained"


class BounceClass(StrEnum):
    NONE = ""
    HARD = "hard"
    SOFT = "soft"
    BLOCK = "block"
    POLICY = "policy"
    QUOTA = "quota"


class TrafficKind(StrEnum):
    TRANSACTIONAL = "transactional"
    MARKETING = "marketing"


class MessageStatusEvent(Event):
    """A state change of one message for one recipient, produced by the MTA."""

    EVENT_TYPE: ClassVar[str] = "message_status"

    message_id: str = Field(min_length=1, max_length=255)
    status: MessageStatus
    recipient: str = ""
    recipient_domain: str = ""
    sender_domain: str = ""
    kind: TrafficKind = TrafficKind.TRANSACTIONAL
    pool: str = ""
    source_ip: str = ""
    mx_host: str = ""
    attempt: int = 0
    smtp_code: int = 0
    enhanced_code: str = ""
    smtp_response: str = ""
    bounce_class: BounceClass = BounceClass.NONE
    reason: str = ""
    transcript: str = ""
    # The MTA's provider group for the recipient (by domain, then by MX host: a custom
    # domain hosted at Google is "google"; "default" when none matches). "" (older
    # producers) or "default": the Flink reputation job names the provider itself.
    provider_group: str = ""
    # Why a bounce/deferral/complaint happened and what it makes us do, from the one
    # classifier (kibamail.bounces: a Reason value, e.g. "user_unknown", and an Action,
    # "suppress" | "retry" | "fix_our_side"); "" for outcomes that are not failures.
    # bounce_class stays for existing consumers.
    bounce_reason: str = ""
    bounce_action: str = ""


class MessageMapping(BaseModel):
    """messageId -> who sent it and why; stored in Redis at send time.

    ``api_key_id``/``smtp_credential_id`` name what authenticated the submission (the API
    key's id, the SMTP credential's username), set by each intake from its authenticated
    principal only: a dashboard (session) send and the platform's own mail record neither,
    a broadcast neither (it is attributed to its ``broadcast_id``).
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    team_id: str
    broadcast_id: str = ""
    contact_id: str = ""
    variant_id: str = ""
    kind: TrafficKind = TrafficKind.TRANSACTIONAL
    tags: list[str] = Field(default_factory=list)
    api_key_id: str = ""
    smtp_credential_id: str = ""


class CorrelatedMessageEvent(MessageStatusEvent):
    """A status event joined with its MessageMapping; what ClickHouse stores."""

    EVENT_TYPE: ClassVar[str] = "message_event"

    broadcast_id: str = ""
    contact_id: str = ""
    variant_id: str = ""
    tags: list[str] = Field(default_factory=list)
    api_key_id: str = ""
    smtp_credential_id: str = ""


class EmailOpenEvent(Event):
    """An open-pixel hit, produced by the API's tracking endpoint."""

    EVENT_TYPE: ClassVar[str] = "email_open"

    message_id: str = Field(min_length=1, max_length=255)
    ip: str = ""
    user_agent: str = ""


class EmailClickEvent(EmailOpenEvent):
    EVENT_TYPE: ClassVar[str] = "email_click"

    url: str = ""
    link_id: str = ""


class Enrichment(BaseModel):
    """Fields the enrichment dataflow adds to opens and clicks."""

    broadcast_id: str = ""
    contact_id: str = ""
    variant_id: str = ""
    country: str = ""
    city: str = ""
    latitude: float | None = None
    longitude: float | None = None
    ua_client: str = ""
    ua_os: str = ""
    ua_device: str = ""
    is_machine: bool = False
    machine_reason: str = ""
    is_first: bool = False


class EnrichedOpenEvent(EmailOpenEvent, Enrichment):
    EVENT_TYPE: ClassVar[str] = "enriched_open"


class EnrichedClickEvent(EmailClickEvent, Enrichment):
    EVENT_TYPE: ClassVar[str] = "enriched_click"


class UnsubscribeEvent(Event):
    EVENT_TYPE: ClassVar[str] = "unsubscribe"

    message_id: str = ""
    contact_id: str = ""
    email: str = ""
    method: Literal["one_click", "page", "api", "complaint"] = "one_click"


class SubmissionFeatures(Event):
    """Features of one accepted transactional submission, for bulk-behaviour scoring."""

    EVENT_TYPE: ClassVar[str] = "submission_features"

    message_id: str
    recipient_count: int = 1
    recipient_domains: list[str] = Field(default_factory=list)
    body_simhash: int = 0
    subject_simhash: int = 0
    has_list_unsubscribe: bool = False
    marketing_markers: list[str] = Field(default_factory=list)
    size_bytes: int = 0


class ReputationSignal(Event):
    """A windowed rate from the Flink SQL jobs; the MTA throttles on it."""

    EVENT_TYPE: ClassVar[str] = "reputation_signal"

    scope: Literal["team", "ip", "ip_provider", "provider"]
    scope_key: str
    window: Literal["1m", "1h"]
    window_start: datetime
    window_end: datetime
    delivered: int = 0
    deferred: int = 0
    bounced: int = 0
    complained: int = 0
    bounce_rate: float = 0.0
    complaint_rate: float = 0.0
    defer_rate: float = 0.0


class TeamPauseEvent(Event):
    EVENT_TYPE: ClassVar[str] = "team_pause"

    paused: bool
    score: float = 0.0
    reason: str = ""
    source: Literal["scoring", "api", "reputation"] = "scoring"


class TeamPauseAuditEvent(Event):
    """One audited decision on a team's pause (kibamail.team_pauses: lift, confirm, review
    request), so the audit outlives Redis. ``reason`` is the operator's reason or the
    Administrator's note; ``pause_*`` describe the pause it was about."""

    EVENT_TYPE: ClassVar[str] = "team_pause_audit"

    action: Literal["lift", "confirm", "review_requested"]
    actor: str = Field(min_length=1, max_length=200)
    reason: str = ""
    pause_event_id: str = ""
    pause_score: float = 0.0
    pause_reason: str = ""


class DomainCheckEvent(Event):
    """A sender-domain DNS check that started failing (record "ready": the domain stopped
    being ready to send). ``event_id`` is derived from domain, record, transition and
    ``checked_at`` (deliverability.domain_alerts), so a retried re-check produces the same event."""

    EVENT_TYPE: ClassVar[str] = "domain_check"

    domain: str = Field(min_length=1, max_length=253)
    record: str = Field(min_length=1, max_length=32)
    previous_status: Literal["pass", "fail", "unknown", "not_checked"]
    current_status: Literal["pass", "fail", "unknown"]
    reason: str = ""
    checked_at: datetime


class OutboundMessage(BaseModel):
    """What the API (and the broadcast workers) hand to the MTA's durable queue."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    message_id: str
    team_id: str
    kind: TrafficKind = TrafficKind.TRANSACTIONAL
    mail_from: str
    recipients: list[str] = Field(min_length=1)
    # The complete RFC 5322 message (headers + body), already rendered.
    data: bytes
    submitted_at: datetime = Field(default_factory=utcnow)
    send_after: datetime | None = None
    source: Literal["api", "smtp", "broadcast"] = "api"
    attempt: int = 0

    def to_stream_fields(self) -> dict[str, bytes]:
        """Redis Stream entry: JSON metadata plus the raw message bytes (no base64)."""
        meta = self.model_dump(mode="python", exclude={"data"})
        return {"meta": orjson.dumps(meta, option=orjson.OPT_UTC_Z), "data": self.data}

    @classmethod
    def from_stream_fields(cls, fields: dict[bytes, bytes]) -> OutboundMessage:
        try:
            meta = orjson.loads(fields[b"meta"])
            return cls.model_validate({**meta, "data": fields[b"data"]})
        except (KeyError, orjson.JSONDecodeError, ValidationError) as exc:
            raise ContractError(f"invalid OutboundMessage stream entry: {exc}") from exc


EVENT_MODELS: dict[Topic, type[Event]] = {
    Topic.MESSAGE_STATUSES: MessageStatusEvent,
    Topic.CLICKHOUSE_MESSAGES: CorrelatedMessageEvent,
    Topic.EMAIL_OPENS: EmailOpenEvent,
    Topic.EMAIL_CLICKS: EmailClickEvent,
    Topic.CLICKHOUSE_EMAIL_OPENS: EnrichedOpenEvent,
    Topic.CLICKHOUSE_EMAIL_CLICKS: EnrichedClickEvent,
    Topic.UNSUBSCRIBES: UnsubscribeEvent,
    Topic.SUBMISSION_FEATURES: SubmissionFeatures,
    Topic.REPUTATION_SIGNALS: ReputationSignal,
    Topic.TEAM_PAUSES: TeamPauseEvent,
    Topic.TEAM_PAUSE_AUDIT: TeamPauseAuditEvent,
    Topic.DOMAIN_CHECKS: DomainCheckEvent,
}

E = TypeVar("E", bound=BaseModel)

SUPPORTED_VERSIONS: frozenset[int] = frozenset({1})


class ContractError(ValueError):
    """A payload that does not satisfy its topic's contract (goes to the dead-letter topic)."""


def serialize(event: BaseModel) -> bytes:
    """JSON bytes via orjson (fast path: model_dump in python mode, then orjson)."""
    return orjson.dumps(event.model_dump(mode="python"), option=orjson.OPT_UTC_Z)


def deserialize(model: type[E], payload: bytes | str) -> E:
    """Parse and validate; raises ContractError with a readable reason."""
    try:
        raw: Any = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ContractError(f"malformed JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ContractError("event must be a JSON object")
    version = raw.get("event_version", 1)
    if issubclass(model, Event) and version not in SUPPORTED_VERSIONS:
        raise ContractError(f"unsupported event_version {version!r}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        fields = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ContractError(f"invalid {model.__name__}: {fields}") from exc


def dead_letter(topic: str, payload: bytes | None, reason: str) -> bytes:
    """The dead-letter envelope: where it came from, why, and the original bytes."""
    return orjson.dumps(
        {
            "event_id": new_event_id(),
            "source_topic": topic,
            "reason": reason,
            "payload": (payload or b"").decode("utf-8", errors="replace"),
            "occurred_at": utcnow(),
        },
        option=orjson.OPT_UTC_Z,
    )


def schema_models() -> dict[str, type[BaseModel]]:
    """Every model whose JSON Schema is committed under kibamail/schemas/."""
    models: dict[str, type[BaseModel]] = {
        topic.value: model for topic, model in EVENT_MODELS.items()
    }
    models["outbound_message"] = OutboundMessage
    models["message_mapping"] = MessageMapping
    return models
