"""Routers per resource (FastAPI "bigger applications" layout)."""

from api.routers import (
    activity,
    auth,
    broadcasts,
    contacts,
    deliverability,
    dmarc,
    domains,
    emails,
    health,
    reputation,
    teams,
    templates,
    tracking,
    unsubscribe,
    usage,
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
    # Customer self-service reads (warehouse marts) and the sending state.
    usage.router,
    deliverability.router,
    dmarc.reads_router,
    reputation.router,
]
