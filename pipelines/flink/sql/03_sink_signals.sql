-- ReputationSignal events (kibamail.contracts) on reputation_signals: read by the MTA's
-- throttle consumer and sunk to ClickHouse raw_reputation_signals.
CREATE TABLE signals (
    event_id       STRING,
    event_version  INT,
    team_id        STRING,
    occurred_at    STRING,
    `scope`          STRING,
    scope_key      STRING,
    `window`       STRING,
    window_start   STRING,
    window_end     STRING,
    delivered      BIGINT,
    `deferred`       BIGINT,
    bounced        BIGINT,
    complained     BIGINT,
    bounce_rate    DOUBLE,
    complaint_rate DOUBLE,
    defer_rate     DOUBLE
) WITH (
    'connector' = 'kafka',
    'topic' = '${signals_topic}',
    'properties.bootstrap.servers' = '${bootstrap}',
    'format' = 'json',
    'sink.delivery-guarantee' = 'at-least-once'
);
