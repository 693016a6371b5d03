-- Every (team, month) from a team's first billed month to the current UTC month, so a
-- team with no traffic in a month still gets a (zero) invoice line. Read from the small
-- monthly usage table, not from the events.
with teams as (
    select team_id, min(billing_month) as first_month
    from {{ ref('int_billing_usage_monthly') }}
    group by team_id
)

select
    team_id,
    addMonths(first_month, month_offset) as billing_month
from teams
array join range(toUInt32(dateDiff('month', first_month, toStartOfMonth(now('UTC'))) + 1))
    as month_offset
