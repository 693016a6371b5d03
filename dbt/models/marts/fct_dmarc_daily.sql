{{
    config(
        engine=table_engine('MergeTree()'),
        order_by='(team_id, domain, day, source_ip)',
    )
}}
-- DMARC digest per team, domain and day: for each sending source (IP, its network
-- (ASN), reporter, identified service) how many messages passed DMARC, how many were
-- aligned on DKIM and SPF, and which policy the receivers applied. Feeds the daily
-- digest email and the DMARC dashboard.
select
    team_id,
    domain,
    day,
    source_ip,
    any(reverse_dns) as reverse_dns,
    any(asn) as asn,
    any(as_org) as as_org,
    any(sending_service) as sending_service,
    any(country) as country,
    groupUniqArray(org_name) as reporters,
    toUInt64(sum(message_count)) as messages,
    toUInt64(sumIf(message_count, is_dmarc_pass)) as dmarc_pass,
    toUInt64(sumIf(message_count, not is_dmarc_pass)) as dmarc_fail,
    toUInt64(sumIf(message_count, is_dkim_aligned)) as dkim_aligned,
    toUInt64(sumIf(message_count, is_spf_aligned)) as spf_aligned,
    toUInt64(sumIf(message_count, disposition = 'none')) as disposition_none,
    toUInt64(sumIf(message_count, disposition = 'quarantine')) as disposition_quarantine,
    toUInt64(sumIf(message_count, disposition = 'reject')) as disposition_reject,
    any(policy_p) as published_policy,
    if(messages = 0, 0, dmarc_pass / messages) as pass_rate
from {{ ref('stg_kibamail__dmarc_records') }}
group by team_id, domain, day, source_ip
