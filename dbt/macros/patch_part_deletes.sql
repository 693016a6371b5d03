{#- Marts recomputed by period (delete_insert) delete the periods they rebuild on every run.
    A classic lightweight DELETE is a mutation: it waits for the background pool to rewrite
    a mask in each part (~0.5-1 s of mostly idle latency per model, per run). With the
    block number/offset columns a DELETE is written as a small patch part instead (tens of
    milliseconds) and applied when parts are read or merged. Tables built before this
    setting existed need one `dbt build --full-refresh`. -#}
{% macro patch_part_delete_table_settings() -%}
{{ return({'enable_block_number_column': 1, 'enable_block_offset_column': 1}) }}
{%- endmacro %}

{% macro patch_part_delete_query_settings() -%}
{{ return({'lightweight_delete_mode': 'lightweight_update'}) }}
{%- endmacro %}
