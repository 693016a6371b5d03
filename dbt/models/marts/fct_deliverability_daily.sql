{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        post_hook="{{ delete_rows_replaced_by_this_run('event_date') }}",
        settings=patch_part_delete_table_settings(),
        engine=table_engine('MergeTree()'),
        order_by='(team_id, event_date, provider)',
        partition_by='toYYYYMM(event_date)',
    )
}}
-- Deliverability per team, day (UTC) and recipient mailbox provider. Engagement
-- counts and rates use human opens/clicks only: machine opens (privacy proxies,
-- security scanners) are counted separately and kept out of the rates.
-- Days touched by rows the fct models added since the last run are recomputed whole.
{% set sources = [ref('fct_message_events'), ref('fct_email_opens'), ref('fct_email_clicks'),
                  ref('stg_kibamail__unsubscribes')] %}
{#- looked up once: every CTE below recomputes the same days -#}
{% set touched_days = touched_periods('event_date', sources) %}

with messages as (
    select
        team_id,
        event_date,
        provider,
        countIf(status = 'accepted') as sent,
        countIf(status = 'delivered') as delivered,
        countIf(status = 'deferred') as deferred,
        countIf(status = 'bounced') as bounced,
        countIf(status = 'bounced' and bounce_class = 'hard') as bounced_hard,
        countIf(status = 'bounced' and bounce_class = 'soft') as bounced_soft,
        countIf(status = 'bounced' and bounce_class not in ('hard', 'soft')) as bounced_other,
        countIf(status = 'complained') as complaints,
        max(ingested_at) as max_ingested_at
    from {{ ref('fct_message_events') }}
    where {{ touched_days }}
    group by team_id, event_date, provider
),

-- opens and clicks carry their message's provider (fct_email_opens / fct_email_clicks)
opens as (
    select
        team_id,
        event_date,
        provider,
        countIf(not is_machine) as human_opens,
        countIf(is_machine) as machine_opens,
        uniqExactIf(message_id, not is_machine) as unique_human_opens,
        max(ingested_at) as max_ingested_at
    from {{ ref('fct_email_opens') }}
    where {{ touched_days }}
    group by team_id, event_date, provider
),

clicks as (
    select
        team_id,
        event_date,
        provider,
        countIf(not is_machine) as human_clicks,
        countIf(is_machine) as machine_clicks,
        uniqExactIf(message_id, not is_machine) as unique_human_clicks,
        max(ingested_at) as max_ingested_at
    from {{ ref('fct_email_clicks') }}
    where {{ touched_days }}
    group by team_id, event_date, provider
),

-- unsubscribes are few: look their messages up by key (int_messages is ordered by it)
unsubscribes_in_scope as (
    select team_id, event_date, message_id, ingested_at
    from {{ ref('stg_kibamail__unsubscribes') }}
    where {{ touched_days }}
),

unsubscribes as (
    select
        u.team_id as team_id,
        u.event_date as event_date,
        if(m.provider = '', 'other', m.provider) as provider,
        count() as unsubscribes,
        max(u.ingested_at) as max_ingested_at
    from unsubscribes_in_scope as u
    left join (
        select message_id, provider from {{ ref('int_messages') }}
        where message_id in (select message_id from unsubscribes_in_scope)
    ) as m on u.message_id = m.message_id
    group by team_id, event_date, provider
),

unioned as (
    select team_id, event_date, provider, sent, delivered, deferred, bounced, bounced_hard,
        bounced_soft, bounced_other, complaints, 0 as human_opens, 0 as machine_opens,
        0 as unique_human_opens, 0 as human_clicks, 0 as machine_clicks,
        0 as unique_human_clicks, 0 as unsubscribes, max_ingested_at
    from messages
    union all
    select team_id, event_date, provider, 0, 0, 0, 0, 0, 0, 0, 0, human_opens, machine_opens,
        unique_human_opens, 0, 0, 0, 0, max_ingested_at
    from opens
    union all
    select team_id, event_date, provider, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, human_clicks,
        machine_clicks, unique_human_clicks, 0, max_ingested_at
    from clicks
    union all
    select team_id, event_date, provider, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        unsubscribes, max_ingested_at
    from unsubscribes
)

select
    team_id,
    event_date,
    provider,
    toUInt64(sum(sent)) as sent,
    toUInt64(sum(delivered)) as delivered,
    toUInt64(sum(deferred)) as deferred,
    toUInt64(sum(bounced)) as bounced,
    toUInt64(sum(bounced_hard)) as bounced_hard,
    toUInt64(sum(bounced_soft)) as bounced_soft,
    toUInt64(sum(bounced_other)) as bounced_other,
    toUInt64(sum(complaints)) as complaints,
    toUInt64(sum(human_opens)) as human_opens,
    toUInt64(sum(machine_opens)) as machine_opens,
    toUInt64(sum(unique_human_opens)) as unique_human_opens,
    toUInt64(sum(human_clicks)) as human_clicks,
    toUInt64(sum(machine_clicks)) as machine_clicks,
    toUInt64(sum(unique_human_clicks)) as unique_human_clicks,
    toUInt64(sum(unsubscribes)) as unsubscribes,
    if(sent = 0, 0, delivered / sent) as delivery_rate,
    if(sent = 0, 0, bounced / sent) as bounce_rate,
    if(delivered = 0, 0, complaints / delivered) as complaint_rate,
    if(delivered = 0, 0, unique_human_opens / delivered) as open_rate,
    if(delivered = 0, 0, unique_human_clicks / delivered) as click_rate,
    max(max_ingested_at) as max_ingested_at,
    {{ load_marker() }}
from unioned
group by team_id, event_date, provider
