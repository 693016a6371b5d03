-- One row per message event as the sink wrote it. No FINAL: a redelivered copy of an
-- event_id may still be here (the sinks are at-least-once); the fct models drop copies
-- once, on the rows they add, instead of every reader re-merging the whole table.
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
    bounce_reason,
    bounce_action,
    provider_group,
    broadcast_id,
    contact_id,
    variant_id,
    api_key_id,
    smtp_credential_id,
    {{ mailbox_provider('recipient_domain') }} as provider,
    ingested_at
from {{ source('kibamail', 'raw_message_events') }}
