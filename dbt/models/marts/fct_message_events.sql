{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        engine=table_engine('ReplacingMergeTree(ingested_at)'),
        order_by='(team_id, event_date, message_id, event_id)',
        partition_by='toYYYYMM(event_date)',
        indexes=ingested_at_index(),
        projections=fct_projections(),
        settings=fct_table_settings(),
        on_schema_change='append_new_columns',
    )
}}
-- One row per message event with its correlation fields (team, broadcast, contact,
-- variant) and the recipient's mailbox provider. Appended incrementally; the
-- ReplacingMergeTree key is a second guard against a duplicate event_id.
{% set since = watermark() %}
with batch as (
    select * from {{ ref('stg_kibamail__message_events') }}
    where {{ ingested_since(since) }}
),

fresh as (
    {{ new_events_once('batch', [ref('stg_kibamail__message_events')], since) }}
)

select
    event_id,
    team_id,
    occurred_at,
    event_date,
    message_id,
    status,
    recipient,
    recipient_domain,
    provider,
    sender_domain,
    kind,
    pool,
    source_ip,
    mx_host,
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
    if(contact_id != '', contact_id, recipient) as contact_key,
    ingested_at,
    {{ load_marker() }}
from fresh
