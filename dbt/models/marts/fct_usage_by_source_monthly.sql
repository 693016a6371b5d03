{{
    config(
        engine=table_engine('MergeTree()'),
        order_by='(usage_month, team_id, source_type, source_id)',
    )
}}
-- Accepted recipients per team, UTC month and what submitted them (issue 15): the API key
-- (its id), the SMTP credential (its username), the broadcast (its id), or 'other' (a
-- dashboard send, the platform's own mail). Counted like int_billing_usage_monthly:
-- distinct (message, recipient) pairs accepted, platform notifications left out, so the
-- sources of a month add up to its billed recipients.
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
    toUInt64(uniqExact(message_id, recipient)) as accepted_recipients
from {{ ref('fct_message_events') }}
where status = 'accepted'
    and {{ customer_teams_only('team_id') }}
group by team_id, usage_month, source_type, source_id
