{#- dbt's relationships test, ClickHouse-friendly: the parent side is narrowed to the keys
    the child rows name, so a parent ordered by that key (int_messages by message_id) is
    read by primary-key range instead of hashed whole for a join (up to 100,000 keys: a
    full build's millions are cheaper to filter by hash than to look up range by range).
    Same result as the adapter's version: every non-null child key without a parent row
    is a failure. -#}
{% macro clickhouse__test_relationships(model, column_name, to, field) %}

with child as (
    select {{ column_name }} as from_field
    from {{ model }}
    where {{ column_name }} is not null
)

select from_field
from child
where from_field not in (
    select {{ field }} from {{ to }}
    where {{ field }} in (select from_field from child)
)
-- end_of_sql
settings use_index_for_in_with_subqueries_max_values = 100000

{% endmacro %}
