-- Sender-domain DNS checks that started failing (DomainCheckEvent on topic domain_checks),
-- landed by the pipelines' ClickHouse sink. event_id is deterministic per domain, record,
-- transition and check time, so a re-produced event stays one row.
CREATE TABLE IF NOT EXISTS $db.raw_domain_checks $on_cluster
(
    event_id        String,
    event_version   UInt8,
    team_id         LowCardinality(String),
    occurred_at     DateTime64(3, 'UTC'),
    domain          String,
    record          LowCardinality(String),
    previous_status LowCardinality(String),
    current_status  LowCardinality(String),
    reason          String,
    checked_at      DateTime64(3, 'UTC'),
    ingested_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = $replacing(ingested_at)
PARTITION BY toYYYYMM(checked_at)
ORDER BY (team_id, domain, record, checked_at, event_id);
