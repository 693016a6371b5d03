"""Routers per resource (FastAPI "bigger applications" layout)."""

from api.routers import (
    activity,
    auth,
    broadcasts,
    contacts,
    dmarc,
    domains,
    emails,
    health,
    teams,
    templates,
    tracking,
    unsubscribe,
    webhooks,
)

# Hot paths first: Starlette matches routes in order.
ROUTERS = [
    emails.router,
    tracking.router,
    health.router,
    auth.router,
    teams.router,
    domains.router,
    contacts.router,
    contacts.public_router,
    templates.router,
    broadcasts.router,
    unsubscribe.router,
    webhooks.router,
    activity.router,
    dmarc.validation_router,
    dmarc.dmarc_router,
]
