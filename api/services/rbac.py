"""Who may do what: the single permission table behind every team-scoped endpoint.

Roles: Administrator everything; Manager everything but billing,
domains and data export; Author edits content but cannot launch; Guest reads
reports and campaigns. A `full` API key acts as Administrator of its own team, a
`sending` key may only send.
"""

from __future__ import annotations

from enum import StrEnum

from api.models import Role


class Action(StrEnum):
    REPORTS_READ = "reports:read"
    CAMPAIGNS_READ = "campaigns:read"
    CONTACTS_READ = "contacts:read"
    CONTENT_WRITE = "content:write"
    BROADCAST_LAUNCH = "broadcasts:launch"
    SEND = "emails:send"
    MEMBERS_MANAGE = "members:manage"
    API_KEYS_MANAGE = "api_keys:manage"
    WEBHOOKS_MANAGE = "webhooks:manage"
    DOMAINS_MANAGE = "domains:manage"
    BILLING = "billing"
    EXPORT = "export"


_ALL = frozenset(Role)
_EDITORS = frozenset({Role.ADMIN, Role.MANAGER, Role.AUTHOR})
_MANAGERS = frozenset({Role.ADMIN, Role.MANAGER})
_ADMINS = frozenset({Role.ADMIN})

PERMISSIONS: dict[Action, frozenset[Role]] = {
    Action.REPORTS_READ: _ALL,
    Action.CAMPAIGNS_READ: _ALL,
    Action.CONTACTS_READ: _EDITORS,
    Action.CONTENT_WRITE: _EDITORS,
    Action.BROADCAST_LAUNCH: _MANAGERS,
    Action.SEND: _MANAGERS,
    Action.MEMBERS_MANAGE: _MANAGERS,
    Action.API_KEYS_MANAGE: _MANAGERS,
    Action.WEBHOOKS_MANAGE: _MANAGERS,
    Action.DOMAINS_MANAGE: _ADMINS,
    Action.BILLING: _ADMINS,
    Action.EXPORT: _ADMINS,
}

SENDING_KEY_ACTIONS = frozenset({Action.SEND})


def role_allows(role: Role, action: Action) -> bool:
    return role in PERMISSIONS[action]
