{#- Data tests on incremental models check only the rows no earlier passing run of the same
    test has checked, instead of re-reading whole tables every hour.

    Every incremental model stamps the rows it writes with the dbt run that wrote them
    (load_marker: `loaded_by_run`). When a data test on such a model passes, the on-run-end
    hook records which runs' rows it has now checked (table data_test_runs). The
    next time, the test reads only rows of runs it has not passed on yet: a new duplicate
    involves at least one such row, and not_null / accepted_values / relationships hold
    row by row. A failing or warning test records nothing, so it keeps reporting the same
    rows until they are fixed, exactly as a whole-table test would.

    Whole tables are tested on a full refresh (every row is new), when a test is new or its
    definition changes (a new test id has checked nothing), and with
    `--vars '{data_tests_check_all_rows: true}'`. Tests on views and tables are never
    restricted. -#}

{% macro load_marker() -%}
toLowCardinality('{{ invocation_id }}') as loaded_by_run
{%- endmacro %}

{% macro checked_runs_relation() -%}
{{ adapter.quote(target.schema) }}.data_test_runs
{%- endmacro %}

{#- on-run-start: the run log (tiny). subject is a model id (that run loaded rows into the
    model) or a data test id (the test passed on that run's rows). -#}
{% macro create_checked_runs_table() -%}
create table if not exists {{ checked_runs_relation() }}
{%- if (target.cluster or '') | trim %} on cluster '{{ target.cluster }}'{% endif %}
(
    subject String,
    run_id String,
    recorded_at DateTime64(3, 'UTC') default now64(3)
)
engine = {{ table_engine('ReplacingMergeTree(recorded_at)') }}
order by (subject, run_id)
{%- endmacro %}

{#- The incremental model a generic test is attached to, or none. -#}
{% macro incremental_model_under_test(test_node) -%}
{%- set attached = test_node.get('attached_node') if test_node is mapping else test_node.attached_node -%}
{%- if attached and attached in graph.nodes
      and graph.nodes[attached].config.materialized == 'incremental' -%}
{{ return(graph.nodes[attached]) }}
{%- endif -%}
{{ return(none) }}
{%- endmacro %}

{% macro not_yet_checked_by(test_id) -%}
loaded_by_run not in (select run_id from {{ checked_runs_relation() }} where subject = '{{ test_id }}')
{%- endmacro %}

{#- A test that never passed has every row to check: it reads the whole table plainly (on a
    first build, restricting a uniqueness test to "keys of unchecked rows" would build a
    set of every key first). -#}
{% macro has_passed_before(test_id) -%}
{%- set log = adapter.get_relation(database=none, schema=target.schema, identifier='data_test_runs') -%}
{%- if log is none -%}{{ return(false) }}{%- endif -%}
{%- set query = "select count() from " ~ checked_runs_relation() ~ " where subject = '" ~ test_id ~ "'" -%}
{{ return(run_query(query).rows[0][0] > 0) }}
{%- endmacro %}

{#- The rows this test still has to look at, as a condition on `relation` ('' = all rows).
    For uniqueness that is every row sharing a key with an unchecked row. -#}
{% macro unchecked_rows_condition(relation) -%}
{%- if not execute or flags.FULL_REFRESH or var('data_tests_check_all_rows', false) -%}
{{ return('') }}
{%- endif -%}
{%- if incremental_model_under_test(model) is none -%}{{ return('') }}{%- endif -%}
{%- if not has_passed_before(model.unique_id) -%}{{ return('') }}{%- endif -%}
{%- set unchecked = not_yet_checked_by(model.unique_id) -%}
{%- set test = model.get('test_metadata') or {} -%}
{%- set arguments = test.get('kwargs') or {} -%}
{%- if test.get('name') == 'unique' -%}
{%- set key = arguments.get('column_name') or model.get('column_name') -%}
{%- elif test.get('name') == 'unique_combination_of_columns' -%}
{%- set key = '(' ~ arguments.get('combination_of_columns') | join(', ') ~ ')' -%}
{%- else -%}
{{ return(unchecked) }}
{%- endif -%}
{{ return(key ~ ' in (select ' ~ key ~ ' from ' ~ relation ~ ' where ' ~ unchecked ~ ')') }}
{%- endmacro %}

{#- dbt wraps the model of every generic test with this macro (dbt's documented override
    point for the `where` config); the test's own `where`, if any, still applies. -#}
{% macro get_where_subquery(relation) -%}
{%- set conditions = [] -%}
{%- set unchecked = unchecked_rows_condition(relation) -%}
{%- if unchecked -%}{%- do conditions.append(unchecked) -%}{%- endif -%}
{%- if config.get('where', '') -%}{%- do conditions.append(config.get('where')) -%}{%- endif -%}
{%- if conditions -%}
{{ return('(select * from ' ~ relation ~ ' where (' ~ conditions | join(') and (') ~ ')) dbt_subquery') }}
{%- endif -%}
{{ return(relation) }}
{%- endmacro %}

{#- on-run-end: log which runs loaded rows into each incremental model, and for each data
    test that passed, that it has now checked the rows of every run logged for its model.
    Only the small run log is read (one INSERT ... SELECT for the whole invocation), never
    the models. A run that crashed before this hook logged nothing, so its rows stay
    unchecked and are tested next time. Assumes one build of a model at a time, as the
    incremental watermarks already do. -#}
{% macro record_checked_runs(results) -%}
{%- set loads = [] -%}
{%- set checks = [] -%}
{%- if execute -%}
{%- for result in results -%}
{%- if result.node.resource_type == 'model' and result.status == 'success'
      and result.node.config.materialized == 'incremental' -%}
{%- do loads.append(result.node.unique_id) -%}
{%- elif result.node.resource_type == 'test' and result.status == 'pass' -%}
{%- set tested = incremental_model_under_test(result.node) -%}
{%- if tested is not none -%}{%- do checks.append((result.node.unique_id, tested.unique_id)) -%}{%- endif -%}
{%- endif -%}
{%- endfor -%}
{%- endif -%}
{%- if loads or checks -%}
insert into {{ checked_runs_relation() }} (subject, run_id)
select subject, run_id from (
    select '' as subject, '' as run_id where 0
{%- for model_id in loads %}
    union all select '{{ model_id }}', '{{ invocation_id }}'
{%- endfor %}
{%- for test_id, model_id in checks %}
    union all select '{{ test_id }}', run_id from {{ checked_runs_relation() }}
        where subject = '{{ model_id }}'
    {%- if model_id in loads %}
    union all select '{{ test_id }}', '{{ invocation_id }}'
    {%- endif %}
{%- endfor %}
)
{%- else -%}
select 1
{%- endif -%}
{%- endmacro %}
