"""Teams, members, invitations, API keys and SMTP credentials."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from api.db import utcnow
from api.deps import (
    CurrentUser,
    DbDep,
    StateDep,
    TeamApiKeys,
    TeamContext,
    TeamMembers,
    TeamReports,
)
from api.errors import ApiError
from api.models import ApiKey, ApiKeyScope, Invitation, Membership, Role, Team, User
from api.routers.etag import IfMatch, check_if_match, tagged
from api.routers.pagination import (
    Cursor,
    Limit,
    decode_cursor,
    encode_cursor,
    paginate,
    paginate_items,
)
from api.schemas import EmailAddress, iso_utc
from api.services.accounts import create_api_key, create_team, revoke_api_key
from api.services.email_verification import not_verified_error, team_sender_verified
from api.services.notifications import INVITE_PURPOSE, send_invitation
from api.services.rbac import outranks
from api.services.security import TokenError

router = APIRouter(prefix="/v1", tags=["teams"])
INVITE_LIFETIME = timedelta(days=7)


class TeamIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class InviteIn(BaseModel):
    email: EmailAddress
    role: Role = Role.AUTHOR


class RoleIn(BaseModel):
    role: Role


class AcceptIn(BaseModel):
    token: str = Field(min_length=10, max_length=500)


class ApiKeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    scope: ApiKeyScope = ApiKeyScope.FULL
    # The most the key may do; default and maximum: the creator's own role.
    role: Role | None = None


def _key_out(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "scope": key.scope,
        "role": key.role,
        "created_at": iso_utc(key.created_at),
        "last_used_at": iso_utc(key.last_used_at),
        "revoked": key.revoked_at is not None,
    }


@router.post("/teams", status_code=201, summary="Create a team (you become its Administrator)")
def new_team(body: TeamIn, user: CurrentUser, db: DbDep, response: Response) -> dict[str, Any]:
    team = create_team(db, user, body.name)
    return tagged(response, _team_out(team, Role.ADMIN))


def _team_out(team: Team, role: Role) -> dict[str, Any]:
    return {
        "id": team.id,
        "name": team.name,
        "role": role.value,
        "your_role": role.value,
        "created_at": iso_utc(team.created_at),
    }


def _team(db: DbDep, ctx: TeamContext) -> Team:
    team = db.get(Team, ctx.team_id)
    if team is None:  # deleted between the membership check and this read
        raise ApiError(404, "team not found")
    return team


@router.get("/teams/{team_id}", summary="Team details (with its ETag)")
def get_team(team_id: str, ctx: TeamReports, db: DbDep, response: Response) -> dict[str, Any]:
    return tagged(response, _team_out(_team(db, ctx), ctx.role))


@router.patch("/teams/{team_id}", summary="Rename a team (If-Match: no lost update)")
def update_team(
    team_id: str,
    body: TeamIn,
    ctx: TeamMembers,
    db: DbDep,
    response: Response,
    if_match: IfMatch = None,
) -> dict[str, Any]:
    team = _team(db, ctx)
    check_if_match(if_match, _team_out(team, ctx.role))
    team.name = body.name
    return tagged(response, _team_out(team, ctx.role))


@router.get("/teams/{team_id}/members", summary="Members and roles")
def list_members(
    team_id: str, ctx: TeamReports, db: DbDep, cursor: Cursor = None, limit: Limit = 100
) -> dict[str, Any]:
    """Ordered by email address (unique per account), which is also the cursor."""
    query = (
        select(User.id, User.email, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.team_id == ctx.team_id)
    )
    if cursor:
        query = query.where(User.email > decode_cursor(cursor))
    rows = list(db.execute(query.order_by(User.email).limit(limit + 1)))
    page = [{"user_id": u, "email": e, "role": r} for u, e, r in rows[:limit]]
    more = len(rows) > limit
    return {"data": page, "next_cursor": encode_cursor(page[-1]["email"]) if more else None}


def _membership(db: DbDep, team_id: str, user_id: str) -> Membership:
    row = db.scalar(
        select(Membership).where(Membership.team_id == team_id, Membership.user_id == user_id)
    )
    if row is None:
        raise ApiError(404, "member not found")
    return row


def _keep_an_admin(db: DbDep, team_id: str, leaving: Membership) -> None:
    if leaving.role != Role.ADMIN.value:
        return
    admins = db.scalar(
        select(func.count())
        .select_from(Membership)
        .where(Membership.team_id == team_id, Membership.role == Role.ADMIN.value)
    )
    if (admins or 0) <= 1:
        raise ApiError(409, "a team must keep at least one Administrator")


def _may_act_on(ctx: TeamContext, role: Role, what: str) -> None:
    """Nobody grants, changes or removes a role above their own (no escalation)."""
    if outranks(role, ctx.role):
        raise ApiError(403, f"a {ctx.role.value} cannot {what} a {role.value}")


@router.patch("/teams/{team_id}/members/{user_id}", summary="Change a member's role")
def change_role(
    team_id: str, user_id: str, body: RoleIn, ctx: TeamMembers, db: DbDep
) -> dict[str, Any]:
    member = _membership(db, ctx.team_id, user_id)
    if user_id == ctx.principal.user_id and ctx.role != Role.ADMIN:
        raise ApiError(403, "only an Administrator may change their own role")
    _may_act_on(ctx, Role(member.role), "change the role of")
    _may_act_on(ctx, body.role, "grant the role of")
    if body.role != Role.ADMIN:
        _keep_an_admin(db, ctx.team_id, member)
    member.role = body.role.value
    return {"user_id": user_id, "role": member.role}


@router.delete("/teams/{team_id}/members/{user_id}", summary="Remove a member")
def remove_member(team_id: str, user_id: str, ctx: TeamMembers, db: DbDep) -> dict[str, Any]:
    member = _membership(db, ctx.team_id, user_id)
    _may_act_on(ctx, Role(member.role), "remove")
    _keep_an_admin(db, ctx.team_id, member)
    db.delete(member)
    return {"removed": user_id}


def _acting_user(db: DbDep, ctx: TeamContext) -> str:
    """The member behind the request: the session's user, or the member who created the
    API key (recorded since keys carry their creator)."""
    user_id = ctx.principal.user_id or _key_creator(db, ctx)
    if user_id is None:
        raise ApiError(403, "this API key has no recorded creator; use a member's session")
    return user_id


def _key_creator(db: DbDep, ctx: TeamContext) -> str | None:
    key = db.get(ApiKey, ctx.principal.api_key_id or "")
    return key.created_by if key is not None else None


def _invitation_out(invitation: Invitation, sent: bool) -> dict[str, Any]:
    return {
        "id": invitation.id,
        "email": invitation.email,
        "role": invitation.role,
        "expires_at": iso_utc(invitation.expires_at),
        "email_sent": sent,
    }


@router.post("/teams/{team_id}/invitations", status_code=201, summary="Invite by email")
def invite(
    team_id: str, body: InviteIn, ctx: TeamMembers, db: DbDep, state: StateDep
) -> dict[str, Any]:
    """Mails a signed, expiring link; re-inviting a pending address reuses its invitation
    (a retried request mails once; a changed role mails the new role)."""
    _may_act_on(ctx, body.role, "invite")
    inviter_id = _acting_user(db, ctx)
    email = body.email.lower()
    invitation = db.scalar(
        select(Invitation).where(
            Invitation.team_id == ctx.team_id,
            Invitation.email == email,
            Invitation.accepted_at.is_(None),
            Invitation.expires_at > utcnow(),
        )
    )
    if invitation is not None:
        _may_act_on(ctx, Role(invitation.role), "change an invitation for")
    else:
        invitation = Invitation(
            team_id=ctx.team_id,
            email=email,
            role=body.role.value,
            invited_by=inviter_id,
            expires_at=utcnow() + INVITE_LIFETIME,
        )
        db.add(invitation)
    invitation.role = body.role.value
    db.flush()
    team = db.get(Team, ctx.team_id)
    inviter = db.get(User, inviter_id)
    sent = send_invitation(
        state.sync_redis,
        state.settings,
        team_id=ctx.team_id,
        invitation_id=invitation.id,
        email=email,
        team_name=team.name if team else ctx.team_id,
        role=invitation.role,
        inviter=inviter.email if inviter else "A team member",
        token=state.signer.dumps_timed(INVITE_PURPOSE, invitation.id),
    )
    return _invitation_out(invitation, sent is not None)


def _open_invitation(db: DbDep, state: StateDep, token: str) -> Invitation:
    try:
        invitation_id = state.signer.loads_timed(
            INVITE_PURPOSE, token, int(INVITE_LIFETIME.total_seconds())
        )
    except TokenError as exc:
        raise ApiError(400, f"invitation token refused: {exc}", "invalid_token") from exc
    invitation = db.get(Invitation, invitation_id)
    if invitation is None or invitation.accepted_at is not None or invitation.expires_at < utcnow():
        raise ApiError(400, "invitation is used, withdrawn or expired", "invalid_token")
    return invitation


TokenQuery = Annotated[str | None, Query(min_length=10, max_length=500)]


@router.get("/invitations/accept", summary="What an invitation link offers (changes nothing)")
def show_invitation(token: TokenQuery, db: DbDep, state: StateDep) -> dict[str, Any]:
    invitation = _open_invitation(db, state, token or "")
    team = db.get(Team, invitation.team_id)
    return {
        "team_name": team.name if team else "",
        "email": invitation.email,
        "role": invitation.role,
        "expires_at": iso_utc(invitation.expires_at),
        "accept": "POST this URL with the invitee's session token",
    }


@router.post("/invitations/accept", summary="Accept an invitation (signed, expiring token)")
def accept_invitation(
    user: CurrentUser,
    db: DbDep,
    state: StateDep,
    body: AcceptIn | None = None,
    token: TokenQuery = None,
) -> dict[str, Any]:
    """The token comes from the mailed link's query string, or a JSON body."""
    raw_token = body.token if body is not None else token
    if not raw_token:
        raise ApiError(422, "an invitation token is needed (query ?token= or body)")
    invitation = _open_invitation(db, state, raw_token)
    if invitation.email != user.email:
        raise ApiError(403, "this invitation was sent to another email address")
    existing = db.scalar(
        select(Membership).where(
            Membership.team_id == invitation.team_id, Membership.user_id == user.id
        )
    )
    if existing is None:
        db.add(Membership(team_id=invitation.team_id, user_id=user.id, role=invitation.role))
    invitation.accepted_at = utcnow()
    return {"team_id": invitation.team_id, "role": invitation.role}


@router.get("/teams/{team_id}/api-keys", summary="API keys (never the key itself)")
def list_keys(
    team_id: str, ctx: TeamApiKeys, db: DbDep, cursor: Cursor = None, limit: Limit = 100
) -> dict[str, Any]:
    query = select(ApiKey).where(ApiKey.team_id == ctx.team_id)
    return paginate(db, query, ApiKey.id, cursor, limit, _key_out)


@router.post("/teams/{team_id}/api-keys", status_code=201, summary="Create an API key (shown once)")
def new_key(team_id: str, body: ApiKeyIn, ctx: TeamApiKeys, db: DbDep) -> dict[str, Any]:
    """The key's ceiling is the creator's role (or a lower one asked for): a key never
    does more than the member who minted it (a key minting a key passes its own on)."""
    ceiling = body.role or ctx.role
    if outranks(ceiling, ctx.role):
        raise ApiError(
            403, f"a {ctx.role.value} cannot create an API key acting as {ceiling.value}"
        )
    key, plaintext = create_api_key(
        db,
        ctx.team_id,
        body.name,
        body.scope,
        role=ceiling,
        created_by=ctx.principal.user_id or _key_creator(db, ctx),
    )
    return {**_key_out(key), "key": plaintext}


@router.delete("/teams/{team_id}/api-keys/{key_id}", summary="Revoke an API key")
def delete_key(
    team_id: str, key_id: str, ctx: TeamApiKeys, db: DbDep, state: StateDep
) -> dict[str, Any]:
    key = db.get(ApiKey, key_id)
    if key is None or key.team_id != ctx.team_id:
        raise ApiError(404, "API key not found")
    revoke_api_key(db, state.sync_redis, key)
    return _key_out(key)


@router.get("/teams/{team_id}/smtp-credentials", summary="SMTP credential usernames")
def list_smtp(
    team_id: str, ctx: TeamApiKeys, state: StateDep, cursor: Cursor = None, limit: Limit = 100
) -> dict[str, Any]:
    from mta.credentials import list_smtp_credentials

    names = list(list_smtp_credentials(state.sync_redis, ctx.team_id))
    return paginate_items(names, str, cursor, limit)


@router.post("/teams/{team_id}/smtp-credentials", status_code=201, summary="New SMTP credential")
def new_smtp(team_id: str, ctx: TeamApiKeys, state: StateDep) -> dict[str, Any]:
    from mta.credentials import create_smtp_credential

    with state.sessions() as db:
        if not team_sender_verified(db, ctx.team_id):
            raise not_verified_error()
    username, password = create_smtp_credential(state.sync_redis, ctx.team_id)
    return {"username": username, "password": password}


@router.delete("/teams/{team_id}/smtp-credentials/{username}", summary="Revoke SMTP credential")
def revoke_smtp(team_id: str, username: str, ctx: TeamApiKeys, state: StateDep) -> dict[str, Any]:
    from mta.credentials import list_smtp_credentials, revoke_smtp_credential

    if username not in list_smtp_credentials(state.sync_redis, ctx.team_id):
        raise ApiError(404, "SMTP credential not found")
    revoke_smtp_credential(state.sync_redis, username)
    return {"username": username, "revoked": True}
