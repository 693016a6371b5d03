-- One row per (scope, key) an event counts for: its team, its sending IP, and the
-- pair of sending IP x recipient provider (mailbox providers throttle per IP). The
-- provider is the MTA's provider_group (grouped by MX too: a custom domain hosted at
-- Google counts as google); events without one ('' from older producers, or 'default')
-- fall back to a guess from the recipient domain, and unknown providers to the domain.
CREATE TEMPORARY VIEW scoped AS
SELECT 'team' AS `scope`, team_id AS scope_key, team_id, `status`, ts
FROM statuses
WHERE team_id IS NOT NULL AND team_id <> ''
UNION ALL
SELECT 'ip' AS `scope`, source_ip AS scope_key, '_platform' AS team_id, `status`, ts
FROM statuses
WHERE source_ip IS NOT NULL AND source_ip <> ''
UNION ALL
SELECT
    'ip_provider' AS `scope`,
    CONCAT(source_ip, '|', COALESCE(NULLIF(NULLIF(provider_group, ''), 'default'), CASE
        WHEN recipient_domain IN ('gmail.com', 'googlemail.com') THEN 'google'
        WHEN recipient_domain IN ('outlook.com', 'hotmail.com', 'live.com', 'msn.com')
            THEN 'microsoft'
        WHEN recipient_domain IN ('yahoo.com', 'ymail.com', 'aol.com') THEN 'yahoo'
        WHEN recipient_domain IN ('icloud.com', 'me.com', 'mac.com') THEN 'apple'
        ELSE COALESCE(recipient_domain, '')
    END)) AS scope_key,
    '_platform' AS team_id,
    `status`,
    ts
FROM statuses
WHERE source_ip IS NOT NULL AND source_ip <> '';
