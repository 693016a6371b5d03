{#- Grain test for aggregate marts: no two rows share the same key columns. -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}
select {{ combination_of_columns | join(', ') }}, count() as rows_with_key
from {{ model }}
group by {{ combination_of_columns | join(', ') }}
having rows_with_key > 1
{% endtest %}
