{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        engine=table_engine('ReplacingMergeTree(ingested_at)'),
        order_by='(team_id, event_date, message_id, event_id)',
        partition_by='toYYYYMM(event_date)',
        indexes=ingested_at_index(),
        projections=fct_projections(),
        settings=fct_table_settings(),
        query_settings={'use_index_for_in_with_subqueries_max_values': 100000},
    )
}}
-- One row per open event, attributed to its message (macro engagement_events, shared
-- with fct_email_clicks).
{{ engagement_events(ref('stg_kibamail__email_opens')) }}
