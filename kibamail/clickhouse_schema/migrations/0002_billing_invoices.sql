-- Closed monthly invoices, written by the Dagster monthly billing close from the dbt
-- mart fct_billing_monthly. One row per team per month; the close only inserts teams
-- not closed yet, so closing a month twice changes nothing (the ReplacingMergeTree key
-- is a second guard). Money is integer micro-dollars; lines is the invoice as JSON.
CREATE TABLE IF NOT EXISTS $db.billing_invoices $on_cluster
(
    invoice_id          String,
    team_id             LowCardinality(String),
    billing_month       Date,
    accepted_recipients UInt64,
    free_recipients     UInt64,
    billable_blocks     UInt64,
    amount_micros       UInt64,
    currency            LowCardinality(String),
    lines               String,
    closed_at           DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = $replacing(closed_at)
ORDER BY (billing_month, team_id);
