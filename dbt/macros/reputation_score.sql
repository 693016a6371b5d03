{#- Reputation score, 0 (blocklist territory) to 100 (clean). Starts at 100 and loses
    points in proportion to the rates mailbox providers act on, scaled so each crosses
    its well-known limit at a similar cost:
      complaint rate: -100 points per 1% (Gmail/Yahoo bulk-sender limit 0.3% => -30)
      bounce rate:    -5 points per 1%   (10% bounces => -50)
      defer rate:     -0.5 points per 1% (throttling is a soft signal)
    plus up to +10 for human engagement (+0.2 per 1% unique human open rate, capped).
    Machine opens never count. Rounded to one decimal, clamped to [0, 100]. -#}
{% macro reputation_score(bounce_rate, complaint_rate, defer_rate, engagement_rate) -%}
round(
    greatest(0, least(100,
        100
        - 10000 * {{ complaint_rate }}
        - 500 * {{ bounce_rate }}
        - 50 * {{ defer_rate }}
        + least(10, 20 * {{ engagement_rate }})
    )),
    1
)
{%- endmacro %}
