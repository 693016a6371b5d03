-- One row per DMARC aggregate-report record (FINAL drops re-ingested reports).
select
    report_key,
    record_index,
    team_id,
    lower(domain) as domain,
    org_name,
    day,
    source_ip,
    reverse_dns,
    asn,
    as_org,
    country,
    sending_service,
    message_count,
    disposition,
    dkim_aligned = 1 as is_dkim_aligned,
    spf_aligned = 1 as is_spf_aligned,
    dmarc_pass = 1 as is_dmarc_pass,
    policy_p,
    ingested_at
from {{ source('kibamail', 'raw_dmarc_records') }} final
