{#- Incremental event models: append the events ingested since the last run (minus a
    lookback for hosts whose clocks disagree), and drop any event_id this model already
    holds, so redelivered and late duplicate events never count twice. -#}
{% macro ingested_since_last_run(ingested_column='ingested_at') -%}
{%- if is_incremental() -%}
{{ ingested_column }} >= (
    select max({{ ingested_column }}) from {{ this }}
) - interval {{ var('incremental_lookback_minutes') }} minute
{%- else -%}
1 = 1
{%- endif -%}
{%- endmacro %}

{% macro not_loaded_yet(batch_relation) -%}
{%- if is_incremental() -%}
event_id not in (
    select event_id from {{ this }}
    where event_date in (select distinct event_date from {{ batch_relation }})
)
{%- else -%}
1 = 1
{%- endif -%}
{%- endmacro %}

{#- Aggregate marts recompute whole days (or months) touched by newly ingested events;
    with incremental_strategy='delete_insert' and unique_key on the period, those
    periods are replaced, everything else is kept. -#}
{% macro touched_periods(column, relations, period_expression='event_date') -%}
{%- if is_incremental() -%}
{{ column }} in (
    {%- for relation in relations %}
    select distinct {{ period_expression }} from {{ relation }}
    where ingested_at >= (
        select max(max_ingested_at) from {{ this }}
    ) - interval {{ var('incremental_lookback_minutes') }} minute
    {% if not loop.last %}union distinct{% endif %}
    {%- endfor %}
)
{%- else -%}
1 = 1
{%- endif -%}
{%- endmacro %}
