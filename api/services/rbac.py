"""Who may do what: the single permission table behind every team-scoped endpoint.

Roles: Administrator everything; Manager everything but billing,
domains and data export; Author edits content but cannot launch; Guest reads
reports and campaigns.

An API key carries a ceiling: the role of the member who created it, at creation. A
`full` key may do what its ceiling role may do, a `sending` key only what its ceiling
allows among SENDING_KEY_ACTIONS; nothing ever lets a key, or a member, act above the
role it was given (`outranks` decides who may grant, change or remove which role).
"""

from __future__ import annotations

from enum import StrEnum

from api.models import ApiKeyScope, Role


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
    SENDING_REVIEW = "sending:review"  # ask the operators to review a sending pause


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
    Action.SENDING_REVIEW: _ADMINS,
}

SENDING_KEY_ACTIONS = frozenset({Action.SEND})


# Higher is more powerful; every role may do at least what the roles below it may do.
RANK: dict[Role, int] = {Role.GUEST: 0, Role.AUTHOR: 1, Role.MANAGER: 2, Role.ADMIN: 3}


def role_allows(role: Role, action: Action) -> bool:
    return role in PERMISSIONS[action]


def outranks(role: Role, other: Role) -> bool:
    """True when `role` is strictly more powerful than `other`."""
    return RANK[role] > RANK[other]


def key_allows(scope: str, ceiling: Role, action: Action) -> bool:
    """An API key's permission: its ceiling role's, narrowed by its scope."""
    if scope != ApiKeyScope.FULL and action not in SENDING_KEY_ACTIONS:
        return False
    return role_allows(ceiling, action)
