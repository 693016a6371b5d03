"""Account operations shared by the HTTP routers and the programmatic bootstrap."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from api.db import utcnow
from api.errors import ApiError
from api.models import ApiKey, ApiKeyScope, Membership, Role, Team, User
from api.services.security import hash_password, new_api_key, sha256_hex
from kibamail.redis_keys import RedisKeys


def create_user(
    db: Session, email: str, password: str, name: str = "", *, verified: bool = False
) -> User:
    """`verified` only for accounts made by the operator (bootstrap, demo): a sign-up
    proves its address through the mailed link (api.services.email_verification)."""
    email = email.strip().lower()
    if db.scalar(select(User.id).where(User.email == email)):
        raise ApiError(409, "an account with this email already exists", "email_taken")
    user = User(
        email=email,
        name=name,
        password_hash=hash_password(password),
        email_verified_at=utcnow() if verified else None,
    )
    db.add(user)
    db.flush()
    return user


def create_team(db: Session, owner: User, name: str) -> Team:
    """A new team; its creator is its Administrator."""
    team = Team(name=name, created_by=owner.id)
    db.add(team)
    db.flush()
    db.add(Membership(team_id=team.id, user_id=owner.id, role=Role.ADMIN.value))
    db.flush()
    return team


def create_api_key(
    db: Session,
    team_id: str,
    name: str,
    scope: ApiKeyScope = ApiKeyScope.FULL,
    *,
    role: Role,
    created_by: str | None,
) -> tuple[ApiKey, str]:
    """Returns the row and the plaintext key (shown once; only its sha256 is stored).
    `role` is the ceiling: the creator's role (or lower), never more (the router checks)."""
    plaintext = new_api_key()
    key = ApiKey(
        team_id=team_id,
        name=name,
        prefix=plaintext[:10],
        key_hash=sha256_hex(plaintext),
        scope=scope.value,
        role=role.value,
        created_by=created_by,
    )
    db.add(key)
    db.flush()
    return key, plaintext


def revoke_api_key(db: Session, redis: Any, key: ApiKey) -> None:
    key.revoked_at = utcnow()
    db.flush()
    redis.delete(RedisKeys.api_key(key.team_id, key.key_hash))


def touch_api_key(sessions: sessionmaker[Session], key_id: str) -> None:
    """Stamp the key's last use (callers do it once per rate-limit window, not per request)."""
    with sessions() as session, session.begin():
        session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=utcnow()))


def administrator_emails(db: Session, team_ids: list[str] | None = None) -> dict[str, list[str]]:
    """team id -> its Administrators' addresses (sorted); every team when team_ids is None.
    Platform mail about a team (domain alerts, DMARC digests) goes to these people."""
    query = (
        select(Membership.team_id, User.email)
        .join(User, User.id == Membership.user_id)
        .where(Membership.role == Role.ADMIN.value)
    )
    if team_ids is not None:
        query = query.where(Membership.team_id.in_(team_ids))
    admins: dict[str, set[str]] = {}
    for team_id, email in db.execute(query):
        admins.setdefault(team_id, set()).add(email)
    return {team_id: sorted(emails) for team_id, emails in admins.items()}
