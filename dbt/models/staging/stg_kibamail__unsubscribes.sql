-- One row per unsubscribe event. Unsubscribes are rare (a small table with no fct model
-- of its own), so the view drops redelivered copies itself with LIMIT 1 BY event_id.
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
from {{ source('kibamail', 'raw_unsubscribes') }}
limit 1 by event_id
