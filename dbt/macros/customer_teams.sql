{#- Platform notifications (invitations, opt-in confirmations, digests) are sent by
    kibamail.system_mail under settings.notifications.team_id. That team is the platform,
    not a customer: billing leaves it out. var('platform_team_id') defaults to the same
    KIBAMAIL_NOTIFICATIONS__TEAM_ID the senders read. -#}
{% macro customer_teams_only(team_column) -%}
{{ team_column }} != '{{ var("platform_team_id") }}'
{%- endmacro %}
