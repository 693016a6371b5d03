{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        engine=table_engine('ReplacingMergeTree(ingested_at)'),
        order_by='(team_id, event_date, message_id, event_id)',
        partition_by='toYYYYMM(event_date)',
    )
}}
-- One row per click event, appended incrementally from the rows ingested since the last
-- run; redelivered copies (already loaded, or twice in one batch) are dropped by event_id.
with batch as (
    select * from {{ ref('stg_kibamail__email_clicks') }}
    where {{ ingested_since_last_run() }}
)

select
    event_id,
    team_id,
    occurred_at,
    event_date,
    message_id,
    url,
    link_id,
    broadcast_id,
    contact_id,
    variant_id,
    country,
    city,
    latitude,
    longitude,
    ua_client,
    ua_os,
    ua_device,
    is_machine,
    machine_reason,
    is_first,
    ingested_at
from batch
where {{ not_loaded_yet([ref('stg_kibamail__email_clicks')]) }}
-- a copy redelivered inside this batch (same event_id twice) is kept once
limit 1 by event_id
