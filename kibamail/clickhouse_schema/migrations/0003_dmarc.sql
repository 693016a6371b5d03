-- DMARC aggregate reports (one row per report, one row per record), RFC 6591 failure
-- reports and RFC 8460 SMTP TLS reports, written by deliverability.storage. Rows are keyed by
-- report_key (hash of reporter + report id + domain) inside ReplacingMergeTree, so a
-- report ingested twice (re-sent mail, re-polled mailbox, re-uploaded file) stays one.
CREATE TABLE IF NOT EXISTS $db.raw_dmarc_reports $on_cluster
(
    report_key       String,
    team_id          LowCardinality(String),
    org_name         LowCardinality(String),
    reporter_email   String,
    report_id        String,
    domain           LowCardinality(String),
    begin_at         DateTime('UTC'),
    end_at           DateTime('UTC'),
    report_schema    LowCardinality(String),
    policy_p         LowCardinality(String),
    policy_sp        LowCardinality(String),
    policy_np        LowCardinality(String),
    policy_pct       Nullable(UInt8),
    policy_adkim     LowCardinality(String),
    policy_aspf      LowCardinality(String),
    record_count     UInt32,
    message_count    UInt64,
    warnings         Array(String),
    source           String,
    ingested_via     LowCardinality(String),
    ingested_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = $replacing(ingested_at)
PARTITION BY toYYYYMM(begin_at)
ORDER BY (domain, report_key);

CREATE TABLE IF NOT EXISTS $db.raw_dmarc_records $on_cluster
(
    report_key       String,
    record_index     UInt32,
    team_id          LowCardinality(String),
    domain           LowCardinality(String),
    org_name         LowCardinality(String),
    report_id        String,
    day              Date,
    begin_at         DateTime('UTC'),
    end_at           DateTime('UTC'),
    source_ip        String,
    reverse_dns      String,
    asn              UInt32,
    as_org           LowCardinality(String),
    country          LowCardinality(String),
    sending_service  LowCardinality(String),
    message_count    UInt64,
    disposition      LowCardinality(String),
    dkim_result      LowCardinality(String),
    spf_result       LowCardinality(String),
    dkim_aligned     UInt8,
    spf_aligned      UInt8,
    dmarc_pass       UInt8,
    header_from      LowCardinality(String),
    envelope_from    String,
    envelope_to      String,
    dkim_domains     Array(String),
    dkim_selectors   Array(String),
    dkim_results     Array(LowCardinality(String)),
    spf_domains      Array(String),
    spf_scopes       Array(LowCardinality(String)),
    spf_results      Array(LowCardinality(String)),
    override_types   Array(LowCardinality(String)),
    override_comments Array(String),
    policy_p         LowCardinality(String),
    ingested_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = $replacing(ingested_at)
PARTITION BY toYYYYMM(day)
ORDER BY (domain, day, report_key, record_index);

CREATE TABLE IF NOT EXISTS $db.raw_dmarc_failure_reports $on_cluster
(
    report_key       String,
    team_id          LowCardinality(String),
    reported_domain  LowCardinality(String),
    arrival_at       DateTime('UTC'),
    source_ip        String,
    feedback_type    LowCardinality(String),
    auth_failure     LowCardinality(String),
    delivery_result  LowCardinality(String),
    dkim_domain      String,
    original_from    String,
    original_subject String,
    original_message_id String,
    fields_json      String CODEC(ZSTD(3)),
    ingested_via     LowCardinality(String),
    ingested_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = $replacing(ingested_at)
PARTITION BY toYYYYMM(arrival_at)
ORDER BY (reported_domain, report_key);

CREATE TABLE IF NOT EXISTS $db.raw_tls_reports $on_cluster
(
    report_key       String,
    policy_index     UInt16,
    team_id          LowCardinality(String),
    organization_name LowCardinality(String),
    report_id        String,
    begin_at         DateTime('UTC'),
    end_at           DateTime('UTC'),
    policy_domain    LowCardinality(String),
    policy_type      LowCardinality(String),
    mx_hosts         Array(String),
    successful_sessions UInt64,
    failed_sessions  UInt64,
    failure_details_json String CODEC(ZSTD(3)),
    ingested_via     LowCardinality(String),
    ingested_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = $replacing(ingested_at)
PARTITION BY toYYYYMM(begin_at)
ORDER BY (policy_domain, report_key, policy_index);
