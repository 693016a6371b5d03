"""Every API table, importable from one place (Alembic imports this to see them all)."""

from api.models.accounts import (
    ApiKey,
    ApiKeyScope,
    Invitation,
    Membership,
    RecoveryCode,
    Role,
    Team,
    User,
    UserSession,
)
from api.models.content import (
    Broadcast,
    Contact,
    ContactList,
    CustomField,
    Domain,
    Template,
    WebhookDelivery,
    WebhookEndpoint,
)

__all__ = [
    "ApiKey",
    "ApiKeyScope",
    "Broadcast",
    "Contact",
    "ContactList",
    "CustomField",
    "Domain",
    "Invitation",
    "Membership",
    "RecoveryCode",
    "Role",
    "Team",
    "Template",
    "User",
    "UserSession",
    "WebhookDelivery",
    "WebhookEndpoint",
]
