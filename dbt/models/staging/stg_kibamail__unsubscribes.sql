-- One row per unsubscribe event (FINAL drops redelivered copies).
select
    event_id,
    team_id,
    occurred_at,
    toDate(occurred_at) as event_date,
    message_id,
    contact_id,
    lower(email) as email,
    method,
    ingested_at
from {{ source('kibamail', 'raw_unsubscribes') }} final
