-- MTA status events (smtp_messages_statuses). Bad JSON is skipped here: the correlation
-- dataflow dead-letters it with its reason. occurred_at is ISO-8601 UTC ("...Z").
CREATE TABLE statuses (
    team_id          STRING,
    `status`           STRING,
    source_ip        STRING,
    recipient_domain STRING,
    provider_group   STRING,
    occurred_at      STRING,
    ts AS CAST(REPLACE(REPLACE(occurred_at, 'T', ' '), 'Z', '') AS TIMESTAMP(3)),
    WATERMARK FOR ts AS ts - INTERVAL '${watermark_seconds}' SECOND
) WITH (
    'connector' = 'kafka',
    'topic' = '${statuses_topic}',
    'properties.bootstrap.servers' = '${bootstrap}',
    'properties.group.id' = 'kibamail-flink-reputation',
    'format' = 'json',
    'json.fail-on-missing-field' = 'false',
    'json.ignore-parse-errors' = 'true',
    ${scan_options}
);
