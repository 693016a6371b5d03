"""Programmatic setup for the demo and tests: a team that can send right away."""

from __future__ import annotations

from api.db import make_engine, make_sessionmaker, migrate, session_scope, utcnow
from api.models import ApiKeyScope, Role
from api.services.accounts import create_api_key, create_team, create_user
from api.services.domains import generate_keys, publish_dkim_key, set_ready_flag
from kibamail.clients import redis_client
from kibamail.settings import Settings


def create_team_with_key(
    settings: Settings,
    *,
    email: str,
    team_name: str,
    domain: str,
    mark_domain_ready: bool = True,
    password: str = "correct horse battery staple",
) -> tuple[str, str]:
    """Create user (address verified: the operator vouches for it), team, full-scope
    Administrator API key and sending domain; returns (team_id, api_key).

    `mark_domain_ready` skips DNS verification (demo/tests only): the domain is marked
    verified and the MTA's ready flag and DKIM key are written to Redis.
    """
    migrate(settings.database.url)
    engine = make_engine(settings.database.url)
    redis = redis_client(settings)
    try:
        with session_scope(make_sessionmaker(engine)) as db:
            user = create_user(db, email, password, name=team_name, verified=True)
            team = create_team(db, user, team_name)
            _key, plaintext = create_api_key(
                db, team.id, "bootstrap", ApiKeyScope.FULL, role=Role.ADMIN, created_by=user.id
            )
            row = generate_keys(domain, team.id)
            if mark_domain_ready:
                row.status = "verified"
                row.verified_at = utcnow()
            db.add(row)
            db.flush()
            team_id = team.id
        publish_dkim_key(redis, row)
        if mark_domain_ready:
            set_ready_flag(redis, row, True)
    finally:
        redis.close()
        engine.dispose()
    return team_id, plaintext
