{#- Local chDB: the plain MergeTree-family engine. With KIBAMAIL_CLICKHOUSE__CLUSTER set
    (profiles.yml `cluster`), dbt-clickhouse runs the DDL ON CLUSTER and the model gets
    the Replicated variant with ONE replica set spanning every node of every shard
    (Keeper path `/clickhouse/tables/{uuid}/all`, no `{shard}`): dbt builds a model on the
    node it is connected to, reading the raw tables through their Distributed tables (all
    shards), and every node then serves the whole model. A per-shard path (the servers'
    default_replica_path) would leave the other shards' nodes with an empty model. `{uuid}`
    is the table's own (ON CLUSTER gives every node the same), so the tmp/backup tables of
    a rebuild never collide in Keeper. -#}
{% macro table_engine(engine) -%}
{%- if (target.cluster or '') | trim -%}
{%- set name = engine.split('(')[0] | trim -%}
{%- set args = engine[engine.find('(') + 1:engine.rfind(')')] | trim if '(' in engine else '' -%}
Replicated{{ name }}('/clickhouse/tables/{uuid}/all', '{replica}'{% if args %}, {{ args }}{% endif %})
{%- else -%}{{ engine }}{%- endif -%}
{%- endmacro %}
