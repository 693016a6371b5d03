-- 1-minute tumbling windows: fast reaction to a burst of bounces or complaints.
-- Rates: bounce = bounced / (delivered + bounced); complaint = complained / delivered;
-- defer = deferred / (delivered + deferred + bounced); 0 when the denominator is 0.
-- event_id is derived from scope, key, window and start: a re-run emits the same ids.
INSERT INTO signals
SELECT
    MD5(CONCAT(`scope`, '|', scope_key, '|1m|', CAST(window_start AS STRING))) AS event_id,
    1 AS event_version,
    team_id,
    DATE_FORMAT(window_end, 'yyyy-MM-dd''T''HH:mm:ss.SSS''Z''') AS occurred_at,
    `scope`,
    scope_key,
    '1m' AS `window`,
    DATE_FORMAT(window_start, 'yyyy-MM-dd''T''HH:mm:ss.SSS''Z''') AS window_start,
    DATE_FORMAT(window_end, 'yyyy-MM-dd''T''HH:mm:ss.SSS''Z''') AS window_end,
    delivered,
    `deferred`,
    bounced,
    complained,
    COALESCE(CAST(bounced AS DOUBLE) / NULLIF(delivered + bounced, 0), 0.0) AS bounce_rate,
    COALESCE(CAST(complained AS DOUBLE) / NULLIF(delivered, 0), 0.0) AS complaint_rate,
    COALESCE(CAST(`deferred` AS DOUBLE) / NULLIF(delivered + `deferred` + bounced, 0), 0.0)
        AS defer_rate
FROM (
    SELECT
        window_start,
        window_end,
        `scope`,
        scope_key,
        team_id,
        SUM(CASE WHEN `status` = 'delivered' THEN 1 ELSE 0 END) AS delivered,
        SUM(CASE WHEN `status` = 'deferred' THEN 1 ELSE 0 END) AS `deferred`,
        SUM(CASE WHEN `status` = 'bounced' THEN 1 ELSE 0 END) AS bounced,
        SUM(CASE WHEN `status` = 'complained' THEN 1 ELSE 0 END) AS complained
    FROM TABLE(
        TUMBLE(TABLE scoped, DESCRIPTOR(ts), INTERVAL '1' MINUTE)
    )
    GROUP BY window_start, window_end, `scope`, scope_key, team_id
)
WHERE delivered + `deferred` + bounced + complained > 0;
