{#- Incremental models read only what arrived since their last run. The watermark and the
    touched days are looked up once, when the model runs, and written into its SQL as
    literals: ClickHouse then prunes partitions and primary-key ranges with them, where a
    correlated subquery repeated in every CTE would be evaluated again and again. A model
    looks its watermark up once (`{% set since = watermark() %}`) and hands it to the
    macros below: each lookup is a scan of the model's ingested_at column. -#}

{#- max(column) of this model, as a ClickHouse DateTime64 literal minus the lookback for
    sinks on hosts whose clocks disagree (rows re-read by the lookback are dropped by the
    callers' event_id anti-join or recomputed idempotently: it costs time, never
    correctness). None before a first run and on a full refresh. -#}
{% macro watermark(column='ingested_at') -%}
{%- if execute and is_incremental() -%}
{%- set value = run_query("select toString(max(" ~ column ~ ")) from " ~ this).rows[0][0] -%}
{{ return("toDateTime64('" ~ value ~ "', 3, 'UTC') - interval " ~ var('incremental_lookback_minutes') ~ " minute") }}
{%- endif -%}
{{ return(none) }}
{%- endmacro %}

{#- Rows ingested since `since` (a watermark(); none: every row). -#}
{% macro ingested_since(since, ingested_column='ingested_at') -%}
{%- if since is none -%}
1 = 1
{%- else -%}
{{ ingested_column }} >= {{ since }}
{%- endif -%}
{%- endmacro %}

{#- The distinct values of period_expression over rows of `relations` ingested since the
    watermark, as a SQL condition `column in (...)` (or `0 = 1` when nothing arrived).
    `consumed_by` (a model id): rows of an incremental upstream model that were loaded by a
    run in which that model was built too are left out, as it has aggregated them already
    (the run log of macros/data_tests_on_unchecked_rows.sql). Without it the lookback
    window alone would recompute the last period before the watermark on every run. -#}
{% macro periods_ingested_since(column, relations, since, period_expression='event_date',
                                consumed_by=none) -%}
{%- set query -%}
    {%- for relation in relations %}
    select distinct toString({{ period_expression }}) as period from {{ relation }}
    where ingested_at >= {{ since }}
    {%- if consumed_by is not none and is_incremental_relation(relation) %}
        and loaded_by_run not in (
            select run_id from {{ checked_runs_relation() }} where subject = '{{ consumed_by }}')
    {%- endif %}
    {% if not loop.last %}union distinct{% endif %}
    {%- endfor %}
{%- endset -%}
{%- set periods = [] -%}
{%- for row in run_query(query).rows -%}{%- do periods.append(row[0]) -%}{%- endfor -%}
{%- if periods | length == 0 -%}
0 = 1
{%- else -%}
{{ column }} in ({% for period in periods | sort %}'{{ period }}'{% if not loop.last %}, {% endif %}{% endfor %})
{%- endif -%}
{%- endmacro %}

{#- Whether `relation` is an incremental model of this project (its rows carry loaded_by_run). -#}
{% macro is_incremental_relation(relation) -%}
{%- for node in graph.nodes.values() -%}
{%- if node.resource_type == 'model' and node.alias == relation.identifier
      and node.config.materialized == 'incremental' -%}
{{ return(true) }}
{%- endif -%}
{%- endfor -%}
{{ return(false) }}
{%- endmacro %}

{#- A duplicate of an event carries the same occurred_at, so it can only collide with rows
    of the same event_date: the anti-join reads just the days the batch touches, never the
    whole model. `relations` are the models the batch is read from. `key` is what the
    set holds: (event_date, event_id) suits models ordered by date; a model ordered
    otherwise (the timeline, by contact) builds and probes a one-column set much faster.
    `batch` (a CTE name): the set is narrowed to the batch's event ids, which the
    event_id projection index (macro fct_projections) finds without reading the days. -#}
{% macro not_loaded_yet(relations, since, key='(event_date, event_id)', batch=none) -%}
{%- if since is none -%}
1 = 1
{%- else -%}
{{ key }} not in (
    select {{ key | replace('(', '') | replace(')', '') }} from {{ this }}
    where {{ periods_ingested_since('event_date', relations, since) }}
    {%- if batch is not none %}
        and event_id in (select event_id from {{ batch }})
    {%- endif %}
)
{%- endif -%}
{%- endmacro %}

{#- Aggregate marts recompute whole days (or months) touched by rows the upstream models
    added since this mart's last run; with incremental_strategy='delete_insert' and
    unique_key on the period, those periods are replaced, everything else is kept. The fct
    models already dropped duplicates, so a redelivered event touches no period. Call it
    once per model and reuse the condition. -#}
{% macro touched_periods(column, relations, period_expression='event_date') -%}
{%- set since = watermark('max_ingested_at') -%}
{%- if since is none -%}
1 = 1
{%- else -%}
{{ periods_ingested_since(column, relations, since, period_expression, consumed_by=model.unique_id) }}
{%- endif -%}
{%- endmacro %}


{#- The batch's rows not loaded yet, one per event_id. An incremental batch is small: one
    pass drops the loaded ones and keeps one row per event_id. A first build or full
    refresh reads every row, where LIMIT 1 BY (one stream) would be slow: copies are rare,
    so they are found first with a narrow parallel GROUP BY on event_id alone; only those
    few go through LIMIT 1 BY, everything else streams through untouched. -#}
{% macro new_events_once(batch, relations, since) -%}
{%- if since is not none -%}
select * from {{ batch }}
where {{ not_loaded_yet(relations, since, batch=batch) }}
limit 1 by event_id
{%- else -%}
select * from {{ batch }}
where event_id not in (select event_id from {{ batch }} group by event_id having count() > 1)
union all
select * from (
    select * from {{ batch }}
    where event_id in (select event_id from {{ batch }} group by event_id having count() > 1)
    limit 1 by event_id
)
{%- endif -%}
{%- endmacro %}

{#- Downstream models read these fct tables by `ingested_at >= watermark`; ingested_at is not
    in their sort key, so a minmax index lets those reads skip all but the new granules
    (rows arrive seconds after they occur, and the tables are sorted by team and day).
    The raw tables have the same index (migration 0005_ingested_at_indexes.sql). -#}
{% macro ingested_at_index() -%}
{{ return([{'name': 'ingested_at_minmax', 'definition': 'ingested_at TYPE minmax GRANULARITY 1'}]) }}
{%- endmacro %}

{#- The append-only fct tables: `max_ingested_at` (one row per part) answers the watermark
    lookup (max(ingested_at)) without reading the column; `by_event_id` (a projection
    index: event_id sorted, with row offsets) finds given event ids without a scan, for
    the anti-join of new_events_once and the uniqueness data tests on unchecked rows. -#}
{% macro fct_projections() -%}
{{ return([{'name': 'max_ingested_at', 'query': 'select max(ingested_at)'},
           {'name': 'by_event_id', 'index': 'event_id'}]) }}
{%- endmacro %}

{#- Merges that drop copies, and a DELETE that fixes bad rows by hand, rebuild the
    projections of the parts they touch (ClickHouse refuses both otherwise). -#}
{% macro fct_table_settings() -%}
{{ return({'deduplicate_merge_projection_mode': 'rebuild',
           'lightweight_mutation_projection_mode': 'rebuild'}) }}
{%- endmacro %}
