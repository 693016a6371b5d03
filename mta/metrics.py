"""Prometheus metrics of the MTA, served at /metrics on ``settings.mta.metrics_host`` (loopback
by default: no auth on this port) and ``settings.mta.metrics_port``."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ACCEPTED = Counter("kibamail_mta_accepted_total", "Messages accepted for delivery", ["source"])
SUBMISSION_REJECTED = Counter(
    "kibamail_mta_submission_rejected_total", "SMTP submissions refused", ["reason"]
)
POLICY_REJECTIONS = Counter(
    "kibamail_mta_policy_rejections_total",
    "Policy chain verdicts other than accept",
    ["policy", "verdict"],
)
OUTCOMES = Counter(
    "kibamail_mta_delivery_outcomes_total",
    "Per-recipient delivery outcomes",
    ["status", "bounce_class", "pool", "source_ip"],
)
DELIVERY_SECONDS = Histogram(
    "kibamail_mta_delivery_seconds", "One SMTP transaction to a remote MX", ["provider_group"]
)
QUEUE_DEPTH = Gauge("kibamail_mta_queue_depth", "Entries in the submission stream not yet acked")
RETRY_DEPTH = Gauge("kibamail_mta_retry_depth", "Jobs waiting in the retry schedule")
OLDEST_RETRY_AGE = Gauge(
    "kibamail_mta_retry_oldest_due_age_seconds", "How overdue the oldest retry job is"
)
OUTBOX_DEPTH = Gauge("kibamail_mta_outbox_depth", "Events waiting to be published to Kafka")
EVENTS_PUBLISHED = Counter("kibamail_mta_events_published_total", "Events acked by Kafka")
AUTH_FAILURES = Counter("kibamail_mta_auth_failures_total", "Failed SMTP AUTH attempts")
CONNECTIONS = Gauge("kibamail_mta_smtp_connections", "Open SMTP client connections", ["listener"])
FORGED_REPORTS = Counter(
    "kibamail_mta_forged_reports_total",
    "Inbound bounce/complaint/DMARC reports refused as unverifiable (changed nothing)",
    ["reason"],
)
INBOUND_REFUSED = Counter(
    "kibamail_mta_inbound_refused_total",
    "Inbound reports refused over a cap (size, parts, nesting, time, memory, queue)",
    ["reason"],
)
INBOUND_PROCESSING = Gauge(
    "kibamail_mta_inbound_reports_processing",
    "Inbound reports queued for or being parsed/stored by the report workers",
)
FIX_OUR_SIDE = Counter(
    "kibamail_mta_fix_our_side_total",
    "Bounces about us (blocks, reputation, policy, authentication, sender): the recipient is "
    "never suppressed; alert on these",
    ["reason", "provider_group"],
)
SUPPRESSIONS = Counter(
    "kibamail_mta_suppressions_total",
    "Addresses suppressed by the MTA (hard bounce, complaint, soft-bounce window)",
    ["reason"],
)
UNSUPPRESSED = Counter(
    "kibamail_mta_unsuppressed_total", "Suppressions lifted by an ARF not-spam report"
)
INBOUND_FINDINGS = Counter(
    "kibamail_mta_inbound_findings_total",
    "Recipients found in inbound reports, by kind (bounce, complaint, delayed, auto_reply, ...)",
    ["kind"],
)
