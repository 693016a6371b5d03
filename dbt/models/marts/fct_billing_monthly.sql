{{
    config(
        engine=table_engine('MergeTree()'),
        order_by='(billing_month, team_id)',
    )
}}
-- Billing per team per UTC month. Rule: the first 10,000 accepted
-- recipients of a month are free, then $0.25 per 1,000. A partial thousand is billed as
-- a whole block (10,001 -> 1 block -> $0.25): the price is per started block, never
-- prorated, so every amount is an exact multiple of $0.25. Money is integer
-- micro-dollars (UInt64) plus the same amount as Decimal(18, 2) dollars; no floats.
with usage as (
    select
        months.team_id as team_id,
        months.billing_month as billing_month,
        usage.accepted_recipients as accepted_recipients
    from {{ ref('int_team_months') }} as months
    left join {{ ref('int_billing_usage_monthly') }} as usage
        on months.team_id = usage.team_id and months.billing_month = usage.billing_month
),

priced as (
    select
        team_id,
        billing_month,
        toUInt64(accepted_recipients) as accepted_recipients,
        toUInt64(least(accepted_recipients, {{ var('billing_free_emails') }})) as free_recipients,
        toUInt64(
            intDiv(
                greatest(accepted_recipients, {{ var('billing_free_emails') }})
                - {{ var('billing_free_emails') }} + {{ var('billing_block_size') }} - 1,
                {{ var('billing_block_size') }}
            )
        ) as billable_blocks
    from usage
)

select
    team_id,
    billing_month,
    accepted_recipients,
    free_recipients,
    billable_blocks,
    toUInt64(billable_blocks * {{ var('billing_block_price_micros') }}) as amount_micros,
    toDecimal64(amount_micros, 2) / 1000000 as amount_usd
from priced
