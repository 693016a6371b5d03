{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        engine=table_engine('ReplacingMergeTree(ingested_at)'),
        order_by='(team_id, event_date, message_id, event_id)',
        partition_by='toYYYYMM(event_date)',
        query_settings={'use_index_for_in_with_subqueries_max_values': 100000},
    )
}}
-- One row per open event, appended incrementally from the rows ingested since the last
-- run; redelivered copies (already loaded, or twice in one batch) are dropped by event_id.
-- Each open carries its message's attribution (provider, sending domain and IP,
-- recipient, contact) looked up once here, so the marts aggregate it without joins.
with batch as (
    select * from {{ ref('stg_kibamail__email_opens') }}
    where {{ ingested_since_last_run() }}
),

fresh as (
    {{ new_events_once('batch', [ref('stg_kibamail__email_opens')]) }}
),

messages as (
    select message_id, provider, sender_domain, source_ip, recipient, contact_key, kind,
        broadcast_id
    from {{ ref('int_messages') }}
    where message_id in (select message_id from batch)
)

select
    e.event_id as event_id,
    e.team_id as team_id,
    e.occurred_at as occurred_at,
    e.event_date as event_date,
    e.message_id as message_id,
    if(e.broadcast_id != '', e.broadcast_id, m.broadcast_id) as broadcast_id,
    e.contact_id as contact_id,
    if(e.contact_id != '', e.contact_id, m.contact_key) as contact_key,
    e.variant_id as variant_id,
    if(m.provider = '', 'other', m.provider) as provider,
    m.sender_domain as sender_domain,
    m.source_ip as source_ip,
    m.recipient as recipient,
    m.kind as kind,
    e.country as country,
    e.city as city,
    e.latitude as latitude,
    e.longitude as longitude,
    e.ua_client as ua_client,
    e.ua_os as ua_os,
    e.ua_device as ua_device,
    e.is_machine as is_machine,
    e.machine_reason as machine_reason,
    e.is_first as is_first,
    e.ingested_at as ingested_at,
    {{ load_marker() }}
from fresh as e
left join messages as m on e.message_id = m.message_id
