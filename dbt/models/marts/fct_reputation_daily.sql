{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        post_hook="{{ delete_rows_replaced_by_this_run('event_date') }}",
        settings=patch_part_delete_table_settings(),
        engine=table_engine('MergeTree()'),
        order_by='(team_id, event_date, sender_domain, source_ip)',
        partition_by='toYYYYMM(event_date)',
    )
}}
-- Reputation per team, sending domain and sending IP per day (UTC), with the score
-- documented in _marts.yml. An attempt's IP is the one the MTA used for it; events
-- without one (complaints) take the IP that delivered the message.
{% set sources = [ref('fct_message_events'), ref('fct_email_opens')] %}
{#- looked up once: every CTE below recomputes the same days -#}
{% set touched_days = touched_periods('event_date', sources) %}

with events_in_scope as (
    select team_id, event_date, message_id, status, sender_domain, source_ip, ingested_at
    from {{ ref('fct_message_events') }}
    where status in ('delivered', 'deferred', 'bounced', 'complained')
        and {{ touched_days }}
),

-- events that do not name their domain or IP (complaints) take the message's; they are
-- few, so they are looked up by key (int_messages is ordered by message_id)
attribution as (
    select message_id, sender_domain, source_ip
    from {{ ref('int_messages') }}
    where message_id in (
        select message_id from events_in_scope where sender_domain = '' or source_ip = ''
    )
),

attributed_events as (
    select team_id, event_date, sender_domain, source_ip, status, ingested_at
    from events_in_scope
    where sender_domain != '' and source_ip != ''
    union all
    select
        e.team_id,
        e.event_date,
        if(e.sender_domain != '', e.sender_domain, m.sender_domain),
        if(e.source_ip != '', e.source_ip, m.source_ip),
        e.status,
        e.ingested_at
    from events_in_scope as e
    left join attribution as m on e.message_id = m.message_id
    where e.sender_domain = '' or e.source_ip = ''
),

attempts as (
    select
        team_id,
        event_date,
        sender_domain,
        source_ip,
        countIf(status = 'delivered') as delivered,
        countIf(status = 'deferred') as deferred,
        countIf(status = 'bounced') as bounced,
        countIf(status = 'complained') as complaints,
        max(ingested_at) as max_ingested_at
    from attributed_events
    group by team_id, event_date, sender_domain, source_ip
),

-- opens carry their message's sending domain and IP (fct_email_opens)
engagement as (
    select
        team_id,
        event_date,
        sender_domain,
        source_ip,
        uniqExactIf(message_id, not is_machine) as unique_human_opens,
        max(ingested_at) as max_ingested_at
    from {{ ref('fct_email_opens') }}
    where {{ touched_days }}
    group by team_id, event_date, sender_domain, source_ip
),

combined as (
    select
        team_id,
        event_date,
        sender_domain,
        source_ip,
        toUInt64(sum(delivered_n)) as delivered,
        toUInt64(sum(deferred_n)) as deferred,
        toUInt64(sum(bounced_n)) as bounced,
        toUInt64(sum(complaints_n)) as complaints,
        toUInt64(sum(opens_n)) as unique_human_opens,
        max(ingested_n) as max_ingested_at
    from (
        select team_id, event_date, sender_domain, source_ip, delivered as delivered_n,
            deferred as deferred_n, bounced as bounced_n, complaints as complaints_n,
            0 as opens_n, max_ingested_at as ingested_n
        from attempts
        union all
        select team_id, event_date, sender_domain, source_ip, 0, 0, 0, 0,
            unique_human_opens, max_ingested_at
        from engagement
    )
    group by team_id, event_date, sender_domain, source_ip
)

select
    team_id,
    event_date,
    sender_domain,
    source_ip,
    delivered,
    deferred,
    bounced,
    complaints,
    unique_human_opens,
    delivered + deferred + bounced as attempts,
    if(attempts = 0, 0, bounced / attempts) as bounce_rate,
    if(attempts = 0, 0, deferred / attempts) as defer_rate,
    if(delivered = 0, 0, complaints / delivered) as complaint_rate,
    if(delivered = 0, 0, least(1, unique_human_opens / delivered)) as engagement_rate,
    {{ reputation_score('bounce_rate', 'complaint_rate', 'defer_rate', 'engagement_rate') }}
        as reputation_score,
    max_ingested_at,
    {{ load_marker() }}
from combined
