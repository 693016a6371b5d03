{#- Mailbox provider group of a recipient domain. Decided by the domain alone (not the
    MX host, which only delivery attempts know) so every event of a message lands in the
    same group; corporate domains hosted at Google/Microsoft count as 'other'. -#}
{% macro mailbox_provider(domain_column) -%}
multiIf(
    lower({{ domain_column }}) in ('gmail.com', 'googlemail.com'), 'google',
    lower({{ domain_column }}) in ('outlook.com', 'hotmail.com', 'live.com', 'msn.com'), 'microsoft',
    lower({{ domain_column }}) in ('yahoo.com', 'ymail.com', 'aol.com', 'rocketmail.com'), 'yahoo',
    lower({{ domain_column }}) in ('icloud.com', 'me.com', 'mac.com'), 'apple',
    lower({{ domain_column }}) in ('gmx.de', 'gmx.net', 'web.de', 'mail.com'), 'gmx',
    'other'
)
{%- endmacro %}
