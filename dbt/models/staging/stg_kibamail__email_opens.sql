-- One row per open event as written (redelivered copies are dropped by fct_email_opens).
-- Machine opens (proxy prefetchers, security scanners) stay here but are flagged.
select
    event_id,
    team_id,
    occurred_at,
    toDate(occurred_at) as event_date,
    message_id,
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
from {{ source('kibamail', 'raw_email_opens') }}
