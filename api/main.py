"""`kibamail api`: migrate once, then serve with uvicorn (several workers if configured)."""

from __future__ import annotations

import uvicorn

from api.db import migrate
from kibamail.settings import Settings


def app_factory() -> object:
    """Import string target for uvicorn workers (each builds its own app)."""
    from api.app import create_app

    return create_app()


def run(settings: Settings) -> None:
    migrate(settings.database.url)
    uvicorn.run(
        "api.main:app_factory",
        factory=True,
        host=settings.api.host,
        port=settings.api.port,
        workers=settings.api.workers,
        loop="uvloop",  # uvicorn[standard]; explicit so a missing wheel fails loudly
        http="httptools",
        backlog=4096,
        log_level="info",
        access_log=False,
        proxy_headers=True,
    )
