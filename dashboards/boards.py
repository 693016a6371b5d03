"""The analyst and ops dashboards, as code. Tables are the dbt marts (see dbt/)."""

from __future__ import annotations

from collections.abc import Callable

from grafana_foundation_sdk.builders import dashboard

from dashboards.dmarc import dmarc
from dashboards.panels import (
    country_map,
    new_dashboard,
    number,
    prometheus_series,
    rows,
    series,
)

DAYS = "$__timeFilter(event_date)"


def sending_overview() -> dashboard.Dashboard:
    return (
        new_dashboard("kibamail-sending", "Sending overview", "Volumes and outcomes, all teams.")
        .with_panel(number("Sent", f"SELECT sum(sent) FROM fct_deliverability_daily WHERE {DAYS}"))
        .with_panel(
            number(
                "Delivery rate",
                "SELECT if(sum(sent) = 0, 0, sum(delivered) / sum(sent))"
                f" FROM fct_deliverability_daily WHERE {DAYS}",
                unit="percentunit",
            )
        )
        .with_panel(
            number(
                "Complaint rate",
                "SELECT if(sum(delivered) = 0, 0, sum(complaints) / sum(delivered))"
                f" FROM fct_deliverability_daily WHERE {DAYS}",
                unit="percentunit",
            )
        )
        .with_panel(
            number(
                "Teams sending",
                f"SELECT uniqExact(team_id) FROM fct_deliverability_daily WHERE {DAYS}",
            )
        )
        .with_panel(
            series(
                "Messages per day by outcome",
                "SELECT toDateTime(event_date) AS time, sum(sent) AS sent,"
                " sum(delivered) AS delivered, sum(deferred) AS deferred,"
                " sum(bounced) AS bounced, sum(complaints) AS complaints"
                f" FROM fct_deliverability_daily WHERE {DAYS} GROUP BY time ORDER BY time",
                width=24,
            )
        )
        .with_panel(
            rows(
                "Top teams by volume",
                "SELECT team_id, sum(sent) AS sent, sum(delivered) AS delivered,"
                " sum(bounced) AS bounced, sum(complaints) AS complaints"
                f" FROM fct_deliverability_daily WHERE {DAYS}"
                " GROUP BY team_id ORDER BY sent DESC LIMIT 20",
            )
        )
    )


def deliverability_by_provider() -> dashboard.Dashboard:
    return (
        new_dashboard(
            "kibamail-deliverability",
            "Deliverability by provider",
            "Delivery, bounce and engagement per mailbox provider. Engagement rates count"
            " human opens/clicks only; machine opens are shown separately.",
        )
        .with_panel(
            series(
                "Delivery rate by provider",
                "SELECT toDateTime(event_date) AS time, provider,"
                " if(sum(sent) = 0, 0, sum(delivered) / sum(sent)) AS delivery_rate"
                f" FROM fct_deliverability_daily WHERE {DAYS}"
                " GROUP BY time, provider ORDER BY time",
                unit="percentunit",
            )
        )
        .with_panel(
            series(
                "Human open rate by provider",
                "SELECT toDateTime(event_date) AS time, provider,"
                " if(sum(delivered) = 0, 0, sum(unique_human_opens) / sum(delivered)) AS open_rate"
                f" FROM fct_deliverability_daily WHERE {DAYS}"
                " GROUP BY time, provider ORDER BY time",
                unit="percentunit",
            )
        )
        .with_panel(
            rows(
                "Provider summary",
                "SELECT provider, sum(sent) AS sent, sum(delivered) AS delivered,"
                " sum(deferred) AS deferred, sum(bounced_hard) AS hard_bounces,"
                " sum(bounced_soft) AS soft_bounces, sum(complaints) AS complaints,"
                " sum(human_opens) AS human_opens, sum(machine_opens) AS machine_opens,"
                " sum(human_clicks) AS human_clicks, sum(unsubscribes) AS unsubscribes"
                f" FROM fct_deliverability_daily WHERE {DAYS} GROUP BY provider ORDER BY sent DESC",
            )
        )
        .with_panel(
            rows(
                "Bounces by reason and provider",
                "SELECT reason, action, provider, sum(bounced) AS bounced,"
                " sum(deferred) AS deferred, sum(expired) AS expired,"
                " sum(complaints) AS complaints, sum(suppressed) AS suppressed"
                f" FROM fct_bounces_daily WHERE {DAYS}"
                " GROUP BY reason, action, provider"
                " ORDER BY bounced + deferred + expired + complaints DESC LIMIT 100",
            )
        )
    )


def engagement_by_country() -> dashboard.Dashboard:
    return (
        new_dashboard(
            "kibamail-engagement-geo",
            "Engagement by country",
            "Human opens and clicks by the reader's country (GeoIP at enrichment time).",
        )
        .with_panel(
            country_map(
                "Human opens by country",
                "SELECT country, count() AS opens FROM fct_email_opens"
                f" WHERE {DAYS} AND NOT is_machine AND country != ''"
                " GROUP BY country ORDER BY opens DESC",
                "opens",
            )
        )
        .with_panel(
            rows(
                "Countries",
                "SELECT o.country AS country, o.opens AS human_opens,"
                " coalesce(c.clicks, 0) AS human_clicks FROM"
                " (SELECT country, count() AS opens FROM fct_email_opens"
                f"  WHERE {DAYS} AND NOT is_machine GROUP BY country) AS o"
                " LEFT JOIN (SELECT country, count() AS clicks FROM fct_email_clicks"
                f"  WHERE {DAYS} AND NOT is_machine GROUP BY country) AS c USING (country)"
                " ORDER BY human_opens DESC LIMIT 50",
            )
        )
    )


def reputation() -> dashboard.Dashboard:
    return (
        new_dashboard(
            "kibamail-reputation",
            "Reputation",
            "Score 0-100 per team, sending domain and IP"
            " (formula in the dbt docs of fct_reputation_daily).",
        )
        .with_panel(
            series(
                "Average score per sending IP",
                "SELECT toDateTime(event_date) AS time, source_ip,"
                " avg(reputation_score) AS score FROM fct_reputation_daily"
                f" WHERE {DAYS} AND source_ip != '' GROUP BY time, source_ip ORDER BY time",
                width=24,
            )
        )
        .with_panel(
            rows(
                "Lowest scores (latest day)",
                "SELECT team_id, sender_domain, source_ip, event_date, attempts, bounce_rate,"
                " complaint_rate, defer_rate, engagement_rate, reputation_score"
                " FROM fct_reputation_daily"
                f" WHERE {DAYS} ORDER BY event_date DESC, reputation_score ASC LIMIT 25",
            )
        )
    )


def billing() -> dashboard.Dashboard:
    return (
        new_dashboard(
            "kibamail-billing",
            "Billing",
            "Accepted recipients and charges per team per month (10,000 free, then $0.25 per"
            " started 1,000) and the invoices closed by the monthly Dagster job.",
        )
        .time("now-1y", "now")
        .with_panel(
            series(
                "Revenue per month (USD)",
                "SELECT toDateTime(billing_month) AS time, sum(amount_micros) / 1e6 AS revenue"
                " FROM fct_billing_monthly WHERE $__timeFilter(billing_month)"
                " GROUP BY time ORDER BY time",
                unit="currencyUSD",
                width=24,
            )
        )
        .with_panel(
            rows(
                "Current usage per team",
                "SELECT team_id, billing_month, accepted_recipients, billable_blocks,"
                " amount_usd FROM fct_billing_monthly"
                " WHERE billing_month = toStartOfMonth(now('UTC'))"
                " ORDER BY accepted_recipients DESC LIMIT 100",
            )
        )
        .with_panel(
            rows(
                "Closed invoices",
                "SELECT invoice_id, team_id, billing_month, accepted_recipients,"
                " amount_micros / 1e6 AS amount_usd, closed_at FROM billing_invoices FINAL"
                " WHERE $__timeFilter(billing_month) ORDER BY billing_month DESC, team_id",
            )
        )
    )


def pipeline_and_mta_health() -> dashboard.Dashboard:
    return (
        new_dashboard(
            "kibamail-health",
            "Pipeline and MTA health",
            "Queue depths, throughput and errors from Prometheus; warehouse lag from ClickHouse.",
        )
        .time("now-6h", "now")
        .refresh("30s")
        .with_panel(
            prometheus_series(
                "MTA accepted per second",
                "sum by (source) (rate(kibamail_mta_accepted_total[5m]))",
                "{{source}}",
            )
        )
        .with_panel(prometheus_series("MTA queue depth", "sum(kibamail_mta_queue_depth)", "queue"))
        .with_panel(
            prometheus_series(
                "Pipeline events in per second",
                "sum by (flow) (rate(kibamail_pipeline_events_in_total[5m]))",
                "{{flow}}",
            )
        )
        .with_panel(
            prometheus_series(
                "Pipeline errors per second",
                "sum by (flow, kind) (rate(kibamail_pipeline_errors_total[5m]))",
                "{{flow}} {{kind}}",
            )
        )
        .with_panel(
            prometheus_series(
                "ClickHouse sink rows per second",
                "sum by (table) (rate(kibamail_sink_rows_total[5m]))",
                "{{table}}",
            )
        )
        .with_panel(
            number(
                "Warehouse lag (minutes behind raw events)",
                "SELECT dateDiff('minute',"
                " (SELECT max(ingested_at) FROM fct_message_events),"
                " (SELECT max(ingested_at) FROM raw_message_events))",
                unit="m",
            )
        )
    )


DASHBOARDS: dict[str, Callable[[], dashboard.Dashboard]] = {
    "sending-overview": sending_overview,
    "deliverability-by-provider": deliverability_by_provider,
    "engagement-by-country": engagement_by_country,
    "reputation": reputation,
    "billing": billing,
    "pipeline-and-mta-health": pipeline_and_mta_health,
    "dmarc": dmarc,
}
