{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        post_hook="{{ delete_rows_replaced_by_this_run('usage_month') }}",
        settings=patch_part_delete_table_settings(),
        engine=table_engine('MergeTree()'),
        order_by='(usage_month, team_id, source_type, source_id)',
    )
}}
-- Accepted recipients per team, UTC month and what submitted them (issue 15): the API key
-- (its id), the SMTP credential (its username), the broadcast (its id), or 'other' (a
-- dashboard send, the platform's own mail). Counted like int_billing_usage_monthly:
-- distinct (message, recipient) pairs accepted, platform notifications left out, so the
-- sources of a month add up to its billed recipients.
-- Incremental like int_billing_usage_monthly: months touched by events added since the
-- last run are recounted whole, every other month is kept as it is.
select
    team_id,
    toStartOfMonth(event_date) as usage_month,
    multiIf(
        api_key_id != '', 'api_key',
        smtp_credential_id != '', 'smtp_credential',
        broadcast_id != '', 'broadcast',
        'other'
    ) as source_type,
    multiIf(
        api_key_id != '', api_key_id,
        smtp_credential_id != '', smtp_credential_id,
        broadcast_id
    ) as source_id,
    toUInt64(uniqExact(message_id, recipient)) as accepted_recipients,
    max(ingested_at) as max_ingested_at,
    {{ load_marker() }}
from {{ ref('fct_message_events') }}
where status = 'accepted'
    and {{ customer_teams_only('team_id') }}
    and {{ touched_periods('toStartOfMonth(event_date)', [ref('fct_message_events')],
                           'toStartOfMonth(event_date)') }}
group by team_id, usage_month, source_type, source_id
