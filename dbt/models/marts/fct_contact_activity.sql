{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        engine=table_engine('ReplacingMergeTree(ingested_at)'),
        order_by='(team_id, contact_key, occurred_at, event_id)',
        partition_by='toYYYYMM(event_date)',
        projections=fct_projections(),
        settings=fct_table_settings(),
    )
}}
-- Per-contact activity timeline: every message status, open, click and unsubscribe of
-- a contact, broadcasts and transactional alike. contact_key is the contact id when the
-- message came from a contact list, else the recipient address. Read newest first with
-- `order by occurred_at desc` (ClickHouse reads the sort key in reverse). Each run adds
-- only the events the upstream models received since the last one; the fct models and
-- the unsubscribe view already dropped redelivered copies, and the anti-join on the
-- batch's days keeps events re-read by the lookback window from being added twice.
{% set since = watermark() %}
with message_batch as (
    select * from {{ ref('fct_message_events') }}
    where {{ ingested_since(since) }}
),

open_batch as (
    select * from {{ ref('fct_email_opens') }}
    where {{ ingested_since(since) }}
),

click_batch as (
    select * from {{ ref('fct_email_clicks') }}
    where {{ ingested_since(since) }}
),

unsubscribe_batch as (
    select * from {{ ref('stg_kibamail__unsubscribes') }}
    where {{ ingested_since(since) }}
),

-- unsubscribes are few: look their messages up by key (int_messages is ordered by it)
unsubscribed_messages as (
    select message_id, recipient, contact_key, kind, broadcast_id
    from {{ ref('int_messages') }}
    where message_id in (select message_id from unsubscribe_batch)
),

activity as (
    select
        event_id, team_id, contact_key, recipient as email, occurred_at, event_date,
        status as activity, message_id, broadcast_id, kind,
        multiIf(status = 'bounced', concat(bounce_class, ' ', enhanced_code),
                status = 'deferred', toString(smtp_code), '') as detail,
        ingested_at
    from message_batch

    union all

    -- opens and clicks carry their message's contact, recipient and kind
    select
        event_id, team_id, contact_key, recipient, occurred_at, event_date,
        if(is_machine, 'opened_by_machine', 'opened'), message_id, broadcast_id, kind,
        country, ingested_at
    from open_batch

    union all

    select
        event_id, team_id, contact_key, recipient, occurred_at, event_date,
        if(is_machine, 'clicked_by_machine', 'clicked'), message_id, broadcast_id, kind, url,
        ingested_at
    from click_batch

    union all

    select
        u.event_id, u.team_id,
        multiIf(u.contact_id != '', u.contact_id, m.contact_key != '', m.contact_key, u.email),
        if(u.email != '', u.email, m.recipient), u.occurred_at, u.event_date,
        'unsubscribed', u.message_id, m.broadcast_id, m.kind, u.method,
        u.ingested_at
    from unsubscribe_batch as u
    left join unsubscribed_messages as m on u.message_id = m.message_id
)

select
    event_id,
    team_id,
    contact_key,
    email,
    occurred_at,
    event_date,
    activity,
    message_id,
    broadcast_id,
    kind,
    detail,
    ingested_at,
    {{ load_marker() }}
from activity
where {{ not_loaded_yet([ref('fct_message_events'), ref('fct_email_opens'), ref('fct_email_clicks'),
                        ref('stg_kibamail__unsubscribes')], since, key='event_id', batch='activity') }}
