{#- fct_email_opens and fct_email_clicks: one row per open/click event, appended from the
    rows ingested since the model's last run; redelivered copies (already loaded, or twice
    in one batch) are dropped by event_id. Each event carries its message's attribution
    (provider, sending domain and IP, recipient, contact) looked up once here in
    int_messages, so the marts aggregate opens and clicks without joins. `extra_columns`
    are the staging columns only one of them has (a click's url and link). -#}
{% macro engagement_events(staging, extra_columns=[]) -%}
{%- set since = watermark() -%}
with batch as (
    select * from {{ staging }}
    where {{ ingested_since(since) }}
),

fresh as (
    {{ new_events_once('batch', [staging], since) }}
),

messages as (
    select message_id, provider, sender_domain, source_ip, recipient, contact_key, kind,
        broadcast_id
    from {{ ref('int_messages') }}
    where message_id in (select message_id from batch)
)

select
    e.event_id as event_id,
    e.team_id as team_id,
    e.occurred_at as occurred_at,
    e.event_date as event_date,
    e.message_id as message_id,
    {%- for column in extra_columns %}
    e.{{ column }} as {{ column }},
    {%- endfor %}
    if(e.broadcast_id != '', e.broadcast_id, m.broadcast_id) as broadcast_id,
    e.contact_id as contact_id,
    if(e.contact_id != '', e.contact_id, m.contact_key) as contact_key,
    e.variant_id as variant_id,
    if(m.provider = '', 'other', m.provider) as provider,
    m.sender_domain as sender_domain,
    m.source_ip as source_ip,
    m.recipient as recipient,
    m.kind as kind,
    e.country as country,
    e.city as city,
    e.latitude as latitude,
    e.longitude as longitude,
    e.ua_client as ua_client,
    e.ua_os as ua_os,
    e.ua_device as ua_device,
    e.is_machine as is_machine,
    e.machine_reason as machine_reason,
    e.is_first as is_first,
    e.ingested_at as ingested_at,
    {{ load_marker() }}
from fresh as e
left join messages as m on e.message_id = m.message_id
{%- endmacro %}
