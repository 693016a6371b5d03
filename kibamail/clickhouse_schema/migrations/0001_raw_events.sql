-- Raw event tables fed by the pipelines' sinks. Rows are keyed by event_id inside
-- ReplacingMergeTree, so at-least-once delivery from Kafka gives exactly-once rows
-- (read with FINAL or dedupe on event_id; the sinks also send insert dedup tokens).
CREATE TABLE IF NOT EXISTS $db.raw_message_events $on_cluster
(
    event_id         String,
    event_version    UInt8,
    team_id          LowCardinality(String),
    occurred_at      DateTime64(3, 'UTC'),
    message_id       String,
    status           LowCardinality(String),
    recipient        String,
    recipient_domain LowCardinality(String),
    sender_domain    LowCardinality(String),
    kind             LowCardinality(String),
    pool             LowCardinality(String),
    source_ip        LowCardinality(String),
    mx_host          LowCardinality(String),
    attempt          UInt16,
    smtp_code        UInt16,
    enhanced_code    LowCardinality(String),
    smtp_response    String,
    bounce_class     LowCardinality(String),
    reason           String,
    transcript       String CODEC(ZSTD(3)),
    broadcast_id     String,
    contact_id       String,
    variant_id       LowCardinality(String),
    tags             Array(LowCardinality(String)),
    ingested_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = $replacing(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (team_id, toDate(occurred_at), message_id, event_id)
TTL toDateTime(occurred_at) + INTERVAL 400 DAY;

CREATE TABLE IF NOT EXISTS $db.raw_email_opens $on_cluster
(
    event_id       String,
    event_version  UInt8,
    team_id        LowCardinality(String),
    occurred_at    DateTime64(3, 'UTC'),
    message_id     String,
    ip             String,
    user_agent     String,
    broadcast_id   String,
    contact_id     String,
    variant_id     LowCardinality(String),
    country        LowCardinality(String),
    city           String,
    latitude       Nullable(Float64),
    longitude      Nullable(Float64),
    ua_client      LowCardinality(String),
    ua_os          LowCardinality(String),
    ua_device      LowCardinality(String),
    is_machine     Bool,
    machine_reason LowCardinality(String),
    is_first       Bool,
    ingested_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = $replacing(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (team_id, toDate(occurred_at), message_id, event_id)
TTL toDateTime(occurred_at) + INTERVAL 400 DAY;

CREATE TABLE IF NOT EXISTS $db.raw_email_clicks $on_cluster
(
    event_id       String,
    event_version  UInt8,
    team_id        LowCardinality(String),
    occurred_at    DateTime64(3, 'UTC'),
    message_id     String,
    ip             String,
    user_agent     String,
    url            String,
    link_id        String,
    broadcast_id   String,
    contact_id     String,
    variant_id     LowCardinality(String),
    country        LowCardinality(String),
    city           String,
    latitude       Nullable(Float64),
    longitude      Nullable(Float64),
    ua_client      LowCardinality(String),
    ua_os          LowCardinality(String),
    ua_device      LowCardinality(String),
    is_machine     Bool,
    machine_reason LowCardinality(String),
    is_first       Bool,
    ingested_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = $replacing(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (team_id, toDate(occurred_at), message_id, event_id)
TTL toDateTime(occurred_at) + INTERVAL 400 DAY;

CREATE TABLE IF NOT EXISTS $db.raw_unsubscribes $on_cluster
(
    event_id      String,
    event_version UInt8,
    team_id       LowCardinality(String),
    occurred_at   DateTime64(3, 'UTC'),
    message_id    String,
    contact_id    String,
    email         String,
    method        LowCardinality(String),
    ingested_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = $replacing(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (team_id, toDate(occurred_at), event_id);

CREATE TABLE IF NOT EXISTS $db.raw_reputation_signals $on_cluster
(
    event_id       String,
    event_version  UInt8,
    team_id        LowCardinality(String),
    occurred_at    DateTime64(3, 'UTC'),
    scope          LowCardinality(String),
    scope_key      String,
    window         LowCardinality(String),
    window_start   DateTime64(3, 'UTC'),
    window_end     DateTime64(3, 'UTC'),
    delivered      UInt64,
    deferred       UInt64,
    bounced        UInt64,
    complained     UInt64,
    bounce_rate    Float64,
    complaint_rate Float64,
    defer_rate     Float64,
    ingested_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = $replacing(ingested_at)
PARTITION BY toYYYYMM(window_start)
ORDER BY (scope, scope_key, window, window_start, event_id)
TTL toDateTime(window_start) + INTERVAL 180 DAY;

CREATE TABLE IF NOT EXISTS $db.raw_team_pauses $on_cluster
(
    event_id      String,
    event_version UInt8,
    team_id       LowCardinality(String),
    occurred_at   DateTime64(3, 'UTC'),
    paused        Bool,
    score         Float64,
    reason        String,
    source        LowCardinality(String),
    ingested_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = $replacing(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (team_id, occurred_at, event_id);
