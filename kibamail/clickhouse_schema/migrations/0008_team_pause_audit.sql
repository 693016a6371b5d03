-- The durable pause audit (issue 15): every lift, confirmation and review request of a
-- team's pause, one row per decision (kibamail.team_pauses queues a TeamPauseAuditEvent
-- on the API outbox -> Kafka team_pause_audit -> the sink). Redis keeps only the recent
-- view; `kibamail teams pauses audit` and GET /v1/teams/{id}/reputation read this table.
CREATE TABLE IF NOT EXISTS $db.raw_team_pause_audit $on_cluster
(
    event_id       String,
    event_version  UInt8,
    team_id        LowCardinality(String),
    occurred_at    DateTime64(6, 'UTC'),  -- microseconds: decisions keep their order
    action         LowCardinality(String),
    actor          String,
    reason         String,
    pause_event_id String,
    pause_score    Float64,
    pause_reason   String,
    ingested_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = $replacing(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (team_id, occurred_at, event_id)
