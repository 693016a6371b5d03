{#- Marts recomputed by period (delete_insert) delete the periods they rebuild on every run.
    A classic lightweight DELETE is a mutation: it waits for the background pool to rewrite
    a mask in each part (~0.5-1 s of mostly idle latency per model, per run). With the
    block number/offset columns a DELETE is written as a small patch part instead (tens of
    milliseconds) and applied when parts are read or merged. Tables built before this
    setting existed need one `dbt build --full-refresh`. -#}
{% macro patch_part_delete_table_settings() -%}
{{ return({'enable_block_number_column': 1, 'enable_block_offset_column': 1}) }}
{%- endmacro %}

{#- Period marts and int_messages replace the keys (days, months, messages) they recompute.
    dbt-clickhouse's delete_insert strategy takes ten statements per run (a temporary
    table created, filled, read back into the model, dropped; column look-ups between).
    These models append instead and then drop, in one patch-part DELETE, the older rows of
    every key this run wrote: two statements. Inserting first also lets int_messages read
    its own current rows while computing the new ones. If the DELETE fails, the model
    fails with both rows of a key present: its uniqueness test (on rows no passing run
    has checked) then fails every run until a full refresh, never silently. -#}
{% macro delete_rows_replaced_by_this_run(key) -%}
{%- if is_incremental() -%}
delete from {{ this }}
where {{ key }} in (select {{ key }} from {{ this }} where loaded_by_run = '{{ invocation_id }}')
    and loaded_by_run != '{{ invocation_id }}'
settings lightweight_delete_mode = 'lightweight_update'
{%- else -%}
select 1
{%- endif -%}
{%- endmacro %}
