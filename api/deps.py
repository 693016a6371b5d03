"""Request dependencies: authentication, THE authorization point, database sessions.

Every team-scoped endpoint depends on `require(action)`; it resolves the caller
(session token or API key), the team (path `team_id`, or the API key's own team),
the caller's role there, and refuses: unknown team or not a member -> 404 (no hint
that the team exists), role lacks the action -> 403. An API key acts with its ceiling
role (its creator's role at creation) narrowed by its scope, never as more.

An API key's team comes first (`RedisKeys.api_key_team`, then kept in the process): its
other Redis keys carry the team's slot tag. The Redis copy of an API key's record
(`RedisKeys.api_key`) exists only for a key that
may send right now (its team's creator verified the address, its ceiling and scope allow
emails:send), or as a `{"revoked": true}` negative entry: the send fast path
(api.fastpath) serves only keys that have a record, so every other key takes the
FastAPI route, which refuses it here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.db import utcnow
from api.errors import ApiError
from api.models import ApiKey, Membership, Role, User, UserSession
from api.services.accounts import touch_api_key
from api.services.email_verification import not_verified_error, team_sender_verified
from api.services.ratelimit import key_team
from api.services.rbac import Action, key_allows, role_allows
from api.services.security import API_KEY_PREFIX, SESSION_PREFIX, sha256_hex
from api.state import AppState
from kibamail.redis_keys import RedisKeys

API_KEY_CACHE_SECONDS = 300


async def app_state(request: Request) -> AppState:
    """Async on purpose: a sync dependency would cost a threadpool hop per request."""
    return request.app.state.km


StateDep = Annotated[AppState, Depends(app_state)]


def get_db(state: StateDep) -> Iterator[Session]:
    session = state.sessions()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# scope="function": the unit of work commits before the response is sent. The default
# ("request") runs the commit after the client already has its 2xx, so a client could use
# a session token or id the database does not have yet, and a failed commit would answer
# success for a write that never happened.
DbDep = Annotated[Session, Depends(get_db, scope="function")]


@dataclass(frozen=True)
class Principal:
    user_id: str | None = None
    api_key_id: str | None = None
    api_key_team_id: str | None = None
    api_key_scope: str | None = None
    api_key_role: str | None = None
    api_key_sender_verified: bool = False


@dataclass(frozen=True)
class TeamContext:
    team_id: str
    role: Role
    principal: Principal


def _lookup_api_key(state: AppState, key_hash: str) -> dict[str, Any] | None:
    with state.sessions() as session:
        key = session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))
        if key is None or key.revoked_at is not None:
            return None
        return {
            "id": key.id,
            "team_id": key.team_id,
            "scope": key.scope,
            "role": key.role,
            "sender_verified": team_sender_verified(session, key.team_id),
        }


def _may_send_now(info: dict[str, Any]) -> bool:
    return bool(info["sender_verified"]) and key_allows(
        info["scope"], Role(info["role"]), Action.SEND
    )


def _lookup_session(state: AppState, token_hash: str) -> str | None:
    with state.sessions() as session:
        row = session.scalar(select(UserSession).where(UserSession.token_hash == token_hash))
        if row is None or row.revoked or row.expires_at < utcnow():
            return None
        return row.user_id


async def _key_team(state: AppState, key_hash: str) -> tuple[str, dict[str, Any] | None]:
    """The key's team ('' for an unknown or revoked key) and, when the database had to be
    read for it, the key's record. Redis's directory (`RedisKeys.api_key_team`) spares
    the database: its ''-entries turn away unknown keys without a query."""
    team = await key_team(state.redis, state.api_key_teams, key_hash)
    if team is not None:
        return team, None
    info = await run_in_threadpool(_lookup_api_key, state, key_hash)
    team = info["team_id"] if info else ""
    await state.redis.set(RedisKeys.api_key_team(key_hash), team, ex=API_KEY_CACHE_SECONDS)
    if team:
        state.api_key_teams[key_hash] = team
    return team, info


async def _api_key_principal(state: AppState, token: str, response: Response) -> Principal:
    """One Redis round trip on the hot path (api.services.ratelimit): token bucket, cached key,
    last-used throttle. The database is read only when the key is not cached."""
    key_hash = sha256_hex(token)
    team_id, loaded = await _key_team(state, key_hash)
    if not team_id:
        raise ApiError(401, "invalid or revoked API key")
    decision = await state.limiter.take(team_id, key_hash)
    info = orjson.loads(decision.cached_key) if decision.cached_key is not None else None
    if info is None or not (info.get("revoked") or "role" in info):  # none, or pre-ceiling
        info = loaded or await run_in_threadpool(_lookup_api_key, state, key_hash)
        if info is None or _may_send_now(info):  # see the module doc
            await state.redis.set(
                RedisKeys.api_key(team_id, key_hash),
                orjson.dumps(info or {"revoked": True}),
                ex=API_KEY_CACHE_SECONDS,
            )
    if not info or info.get("revoked"):
        raise ApiError(401, "invalid or revoked API key")
    headers = decision.headers()
    if not decision.allowed:
        raise ApiError(
            429,
            "rate limit exceeded for this API key",
            headers={**headers, "Retry-After": decision.retry_after()},
        )
    response.headers.update(headers)
    if decision.first_use:
        await run_in_threadpool(touch_api_key, state.sessions, info["id"])
    return Principal(
        api_key_id=info["id"],
        api_key_team_id=info["team_id"],
        api_key_scope=info["scope"],
        api_key_role=info["role"],
        api_key_sender_verified=bool(info["sender_verified"]),
    )


async def get_principal(request: Request, response: Response, state: StateDep) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(
            401, "missing bearer token", headers={"WWW-Authenticate": 'Bearer realm="kibamail"'}
        )
    if token.startswith(SESSION_PREFIX):
        user_id = await run_in_threadpool(_lookup_session, state, sha256_hex(token))
        if user_id is None:
            raise ApiError(401, "invalid or expired session token")
        return Principal(user_id=user_id)
    if not token.startswith(API_KEY_PREFIX):
        raise ApiError(401, "unrecognised bearer token")
    return await _api_key_principal(state, token, response)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def _member_role(state: AppState, team_id: str, user_id: str) -> Role | None:
    with state.sessions() as session:
        role = session.scalar(
            select(Membership.role).where(
                Membership.team_id == team_id, Membership.user_id == user_id
            )
        )
        return Role(role) if role else None


async def authorize(
    state: AppState, principal: Principal, team_id: str | None, action: Action
) -> TeamContext:
    """THE authorization point (see module doc)."""
    if principal.api_key_id:
        if team_id is not None and team_id != principal.api_key_team_id:
            raise ApiError(404, "team not found")
        team_id = principal.api_key_team_id or ""
        ceiling = Role(principal.api_key_role or Role.GUEST)
        if not key_allows(principal.api_key_scope or "", ceiling, action):
            raise ApiError(
                403,
                f"a {principal.api_key_scope}-scope API key created by a {ceiling.value} "
                f"cannot {action.value}",
            )
        return TeamContext(team_id, ceiling, principal)
    if team_id is None:
        raise ApiError(400, "this endpoint needs an API key (or a team id in the path)")
    role = await run_in_threadpool(_member_role, state, team_id, principal.user_id or "")
    if role is None:
        raise ApiError(404, "team not found")
    if not role_allows(role, action):
        raise ApiError(403, f"role {role.value} may not {action.value}")
    return TeamContext(team_id, role, principal)


def _sender_verified(state: AppState, team_id: str) -> bool:
    with state.sessions() as session:
        return team_sender_verified(session, team_id)


async def require_verified_sender(state: AppState, ctx: TeamContext) -> None:
    """403 email_not_verified until the team's creator verified the address (sends,
    SMTP credentials, broadcast launches; api.services.email_verification)."""
    if ctx.principal.api_key_id:
        verified = ctx.principal.api_key_sender_verified
    else:
        verified = await run_in_threadpool(_sender_verified, state, ctx.team_id)
    if not verified:
        raise not_verified_error()


def require(action: Action, verified_sender: bool = False) -> Callable[..., Any]:
    async def dependency(request: Request, state: StateDep, principal: PrincipalDep) -> TeamContext:
        ctx = await authorize(state, principal, request.path_params.get("team_id"), action)
        if verified_sender:
            await require_verified_sender(state, ctx)
        return ctx

    return dependency


def current_user_id(principal: PrincipalDep) -> str:
    if principal.user_id is None:
        raise ApiError(403, "this endpoint needs a user session, not an API key")
    return principal.user_id


CurrentUserId = Annotated[str, Depends(current_user_id)]


def current_user(user_id: CurrentUserId, db: DbDep) -> User:
    user = db.get(User, user_id)
    if user is None:
        raise ApiError(401, "user no longer exists")
    return user


CurrentUser = Annotated[User, Depends(current_user)]

TeamReports = Annotated[TeamContext, Depends(require(Action.REPORTS_READ))]
TeamCampaigns = Annotated[TeamContext, Depends(require(Action.CAMPAIGNS_READ))]
TeamContactsRead = Annotated[TeamContext, Depends(require(Action.CONTACTS_READ))]
TeamContentWrite = Annotated[TeamContext, Depends(require(Action.CONTENT_WRITE))]
# Launch, pause, resume and cancel: a team that may not send has no running broadcast.
TeamLaunch = Annotated[TeamContext, Depends(require(Action.BROADCAST_LAUNCH, verified_sender=True))]


async def sending_context(request: Request, response: Response) -> TeamContext:
    """require(Action.SEND) for the send endpoints, resolved as ONE dependency: the same
    get_principal + authorize calls, without the nested resolutions (the hot path)."""
    state: AppState = request.app.state.km
    principal = await get_principal(request, response, state)
    ctx = await authorize(state, principal, request.path_params.get("team_id"), Action.SEND)
    await require_verified_sender(state, ctx)
    return ctx


TeamSend = Annotated[TeamContext, Depends(sending_context)]
TeamMembers = Annotated[TeamContext, Depends(require(Action.MEMBERS_MANAGE))]
TeamApiKeys = Annotated[TeamContext, Depends(require(Action.API_KEYS_MANAGE))]
TeamWebhooks = Annotated[TeamContext, Depends(require(Action.WEBHOOKS_MANAGE))]
TeamDomains = Annotated[TeamContext, Depends(require(Action.DOMAINS_MANAGE))]
