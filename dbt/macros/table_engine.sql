{#- Local chDB: the plain MergeTree-family engine. With KIBAMAIL_CLICKHOUSE__CLUSTER set
    (profiles.yml `cluster`), dbt-clickhouse runs the DDL ON CLUSTER and the model gets
    the Replicated variant; replica path and name come from the servers'
    default_replica_path / default_replica_name settings. -#}
{% macro table_engine(engine) -%}
{%- if (target.cluster or '') | trim -%}Replicated{{ engine }}{%- else -%}{{ engine }}{%- endif -%}
{%- endmacro %}
