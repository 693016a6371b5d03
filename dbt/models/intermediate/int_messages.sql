{{
    config(
        materialized='incremental',
        incremental_strategy='delete_insert',
        unique_key='message_id',
        engine=table_engine('MergeTree()'),
        order_by='(team_id, message_id)',
    )
}}
-- One row per message: who it went to and how it left (sending domain, the IP that
-- delivered it, provider). Opens, clicks and unsubscribes carry only a message_id, so
-- the marts attribute engagement through this model. Messages touched by newly
-- ingested events are recomputed from all their events.
select
    team_id,
    message_id,
    any(recipient) as recipient,
    any(recipient_domain) as recipient_domain,
    any(provider) as provider,
    any(sender_domain) as sender_domain,
    any(kind) as kind,
    any(broadcast_id) as broadcast_id,
    any(contact_id) as contact_id,
    any(contact_key) as contact_key,
    argMaxIf(source_ip, occurred_at, source_ip != '') as source_ip,
    min(occurred_at) as first_event_at,
    max(ingested_at) as max_ingested_at
from {{ ref('fct_message_events') }}
{% if is_incremental() %}
where message_id in (
    select message_id from {{ ref('fct_message_events') }}
    where ingested_at >= (select max(max_ingested_at) from {{ this }})
        - interval {{ var('incremental_lookback_minutes') }} minute
)
{% endif %}
group by team_id, message_id
