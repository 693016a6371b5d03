-- One row per message event: FINAL collapses redelivered copies of an event_id
-- (the sinks are at-least-once; the raw table is ReplacingMergeTree by event_id).
select
    event_id,
    team_id,
    occurred_at,
    toDate(occurred_at) as event_date,
    message_id,
    status,
    lower(recipient) as recipient,
    lower(recipient_domain) as recipient_domain,
    lower(sender_domain) as sender_domain,
    kind,
    pool,
    source_ip,
    lower(mx_host) as mx_host,
    attempt,
    smtp_code,
    enhanced_code,
    bounce_class,
    broadcast_id,
    contact_id,
    variant_id,
    {{ mailbox_provider('recipient_domain') }} as provider,
    ingested_at
from {{ source('kibamail', 'raw_message_events') }} final
