{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        post_hook="{{ delete_rows_replaced_by_this_run('billing_month') }}",
        settings=patch_part_delete_table_settings(),
        engine=table_engine('MergeTree()'),
        order_by='(billing_month, team_id)',
    )
}}
-- Billable usage per team per UTC calendar month: accepted recipients, i.e. distinct
-- (message, recipient) pairs the platform accepted for delivery. Bounces, deferrals
-- and failures after acceptance still count (the work was done); rejected submissions
-- never reach the event stream and do not count. Platform notifications (the team
-- var('platform_team_id')) are not customer usage and are left out.
-- Incremental: months touched by events added since the last run are recounted whole
-- (uniqExact needs the month's pairs), every other month is kept as it is.
select
    team_id,
    toStartOfMonth(event_date) as billing_month,
    toUInt64(uniqExact(message_id, recipient)) as accepted_recipients,
    max(ingested_at) as max_ingested_at,
    {{ load_marker() }}
from {{ ref('fct_message_events') }}
where status = 'accepted'
    and {{ customer_teams_only('team_id') }}
    and {{ touched_periods('toStartOfMonth(event_date)', [ref('fct_message_events')],
                           'toStartOfMonth(event_date)') }}
group by team_id, billing_month
