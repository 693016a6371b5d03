-- Billable usage per team per UTC calendar month: accepted recipients, i.e. distinct
-- (message, recipient) pairs the platform accepted for delivery. Bounces, deferrals
-- and failures after acceptance still count (the work was done); rejected submissions
-- never reach the event stream and do not count.
select
    team_id,
    toStartOfMonth(occurred_at, 'UTC') as billing_month,
    toUInt64(uniqExact(message_id, recipient)) as accepted_recipients,
    max(ingested_at) as max_ingested_at
from {{ ref('fct_message_events') }}
where status = 'accepted'
group by team_id, billing_month
