-- Every (team, month) from a team's first event to the current UTC month, so a team
-- with no traffic in a month still gets a (zero) invoice line.
with teams as (
    select team_id, toStartOfMonth(min(occurred_at), 'UTC') as first_month
    from {{ ref('fct_message_events') }}
    group by team_id
)

select
    team_id,
    addMonths(first_month, month_offset) as billing_month
from teams
array join range(toUInt32(dateDiff('month', first_month, toStartOfMonth(now('UTC'))) + 1))
    as month_offset
