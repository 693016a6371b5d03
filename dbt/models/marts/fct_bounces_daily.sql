{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        post_hook="{{ delete_rows_replaced_by_this_run('event_date') }}",
        settings=patch_part_delete_table_settings(),
        engine=table_engine('MergeTree()'),
        order_by='(team_id, event_date, provider, reason)',
        partition_by='toYYYYMM(event_date)',
    )
}}
-- Bounces, deferrals, expiries and complaints per team, UTC day, mailbox provider, reason
-- and action (kibamail.bounces: the MTA's synchronous replies and the reports port 25
-- reads go through the same classifier). The provider is the MTA's provider group (a
-- custom domain whose MX is Google counts as google) and, where the MTA named none, the
-- recipient domain's (macro mailbox_provider). Events from before reasons were recorded
-- read reason 'unclassified'. Days touched since the last run are recomputed whole.
{% set touched_days = touched_periods('event_date', [ref('fct_message_events')]) %}

with failures as (
    select
        team_id,
        event_date,
        if(provider_group in ('', 'default'), provider, provider_group) as bounce_provider,
        if(bounce_reason = '', 'unclassified', bounce_reason) as bounce_reason_or_unclassified,
        bounce_action,
        status,
        recipient,
        ingested_at
    from {{ ref('fct_message_events') }}
    where status in ('bounced', 'deferred', 'expired', 'complained')
        and {{ touched_days }}
)

select
    team_id,
    event_date,
    bounce_provider as provider,
    bounce_reason_or_unclassified as reason,
    bounce_action as action,
    toUInt64(countIf(status = 'bounced')) as bounced,
    toUInt64(countIf(status = 'deferred')) as deferred,
    toUInt64(countIf(status = 'expired')) as expired,
    toUInt64(countIf(status = 'complained')) as complaints,
    toUInt64(countIf(bounce_action = 'suppress' and status in ('bounced', 'complained')))
        as suppressed,
    toUInt64(uniqExact(recipient)) as recipients,
    max(ingested_at) as max_ingested_at,
    {{ load_marker() }}
from failures
group by team_id, event_date, bounce_provider, bounce_reason_or_unclassified, bounce_action
