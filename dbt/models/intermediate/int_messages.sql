{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        post_hook="{{ delete_rows_replaced_by_this_run('message_id') }}",
        settings=patch_part_delete_table_settings(),
        engine=table_engine('MergeTree()'),
        order_by='(message_id)',
    )
}}
-- One row per message: who it went to and how it left (sending domain, the IP that
-- delivered it, provider). Opens, clicks, unsubscribes and complaints carry only a
-- message_id, so the marts attribute them through this model; ordered by message_id so
-- those lookups (`message_id in (...)`) read only the granules they need.
-- Incremental without re-reading history: a touched message's new row folds its
-- current row together with the newly ingested events. Every aggregate here (first
-- non-empty value, min, max, latest IP by time) is idempotent, so events re-read by the
-- lookback window change nothing.
{%- set columns = ['team_id', 'recipient', 'recipient_domain', 'provider', 'sender_domain',
                  'kind', 'broadcast_id', 'contact_id', 'contact_key', 'source_ip',
                  'source_ip_at', 'first_event_at', 'max_ingested_at'] %}
with new_events as (
    select
        message_id,
        team_id, recipient, recipient_domain, provider, sender_domain, kind,
        broadcast_id, contact_id, contact_key, source_ip,
        if(source_ip != '', occurred_at, toDateTime64(0, 3, 'UTC')) as source_ip_at,
        occurred_at as first_event_at,
        ingested_at as max_ingested_at
    from {{ ref('fct_message_events') }}
    where {{ ingested_since(watermark('max_ingested_at')) }}
),

folded as (
    -- columns renamed e_* so the aggregates below never resolve to their own aliases
    select message_id{% for c in columns %}, {{ c }} as e_{{ c }}{% endfor %}
    from (
        select * from new_events
        {% if is_incremental() %}
        union all
        select message_id{% for c in columns %}, {{ c }}{% endfor %}
        from {{ this }}
        where message_id in (select message_id from new_events)
        {% endif %}
    )
)

select
    message_id,
    any(e_team_id) as team_id,
    anyIf(e_recipient, e_recipient != '') as recipient,
    anyIf(e_recipient_domain, e_recipient_domain != '') as recipient_domain,
    {{ mailbox_provider('recipient_domain') }} as provider,
    anyIf(e_sender_domain, e_sender_domain != '') as sender_domain,
    anyIf(e_kind, e_kind != '') as kind,
    anyIf(e_broadcast_id, e_broadcast_id != '') as broadcast_id,
    anyIf(e_contact_id, e_contact_id != '') as contact_id,
    anyIf(e_contact_key, e_contact_key != '') as contact_key,
    argMax(e_source_ip, e_source_ip_at) as source_ip,
    max(e_source_ip_at) as source_ip_at,
    min(e_first_event_at) as first_event_at,
    max(e_max_ingested_at) as max_ingested_at,
    {{ load_marker() }}
from folded
group by message_id
