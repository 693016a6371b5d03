"""Sending domains: add (DKIM keys generated), DNS records to publish, verify, delete.

Each record shows the API's status (verified/missing/mismatch/error/not_checked) and,
since the checks moved to deliverability.domain_checks, the check's own pass/fail/unknown with
what was found and why; ``checks`` has every check (MX too) and ``ready`` the MTA's flag.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select

from api.deps import DbDep, StateDep, TeamDomains
from api.errors import ApiError
from api.models import Domain
from api.routers.etag import IfMatch, check_if_match, tagged
from api.routers.pagination import Cursor, Limit, decode_cursor, encode_cursor
from api.schemas import iso_utc
from api.services.domains import (
    api_status,
    check_status,
    dns_records,
    generate_keys,
    ownership_contested,
    publish_dkim_key,
    reserved_for_platform,
    stored_checks,
    verify_domain,
    withdraw_domain,
)
from kibamail.contracts import DomainCheckEvent, Topic

router = APIRouter(prefix="/v1/teams/{team_id}/domains", tags=["domains"])
_DOMAIN = re.compile(r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


class DomainIn(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "mail.example.com"}]})

    name: str = Field(
        max_length=253,
        json_schema_extra={
            "minLength": 4,
            "pattern": r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
        },
    )

    @field_validator("name")
    @classmethod
    def _valid(cls, value: str) -> str:
        value = value.strip().lower().rstrip(".")
        if not _DOMAIN.match(value):
            raise ValueError("not a valid domain name")
        return value


def _out(domain: Domain, state: StateDep, db: DbDep) -> dict[str, Any]:
    checks = stored_checks(domain)
    contested = ownership_contested(db, domain)
    return {
        "id": domain.id,
        "name": domain.name,
        "status": domain.status,
        "verified_at": iso_utc(domain.verified_at),
        "last_checked_at": iso_utc(domain.last_checked_at),
        "records": [
            {
                "record": r.key,
                "type": r.type,
                "name": r.name,
                "value": r.value,
                "required": r.required,
                "status": api_status(checks.get(r.check)),
                "check": check_status(checks.get(r.check)),
                "found": checks.get(r.check, {}).get("found", []),
                "reasons": checks.get(r.check, {}).get("reasons", []),
            }
            for r in dns_records(domain, state.settings, contested)
        ],
        "ready": domain.status == "verified",
        "checks": {
            name: {
                "status": check_status(entry),
                "found": entry.get("found", []),
                "reasons": entry.get("reasons", []),
            }
            for name, entry in checks.items()
        },
    }


def _get(db: DbDep, team_id: str, domain_id: str) -> Domain:
    domain = db.get(Domain, domain_id)
    if domain is None or domain.team_id != team_id:
        raise ApiError(404, "domain not found")
    return domain


@router.get("", summary="Sending domains (by name; the name is the cursor)")
def list_domains(
    team_id: str,
    ctx: TeamDomains,
    db: DbDep,
    state: StateDep,
    cursor: Cursor = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    query = select(Domain).where(Domain.team_id == ctx.team_id)
    if cursor:
        query = query.where(Domain.name > decode_cursor(cursor))
    rows = list(db.scalars(query.order_by(Domain.name).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1].name) if more and rows else None
    return {"data": [_out(d, state, db) for d in rows], "next_cursor": next_cursor}


@router.post("", status_code=201, summary="Add a domain; returns the DNS records to publish")
def add_domain(
    team_id: str, body: DomainIn, ctx: TeamDomains, db: DbDep, state: StateDep, response: Response
) -> dict[str, Any]:
    if reserved_for_platform(state.settings, body.name, ctx.team_id):
        raise ApiError(
            422,
            f"{body.name} is the platform's notification domain and cannot be a team's domain",
            "domain_reserved",
            [{"path": "name", "message": "use a domain your organisation owns"}],
        )
    if db.scalar(select(Domain.id).where(Domain.name == body.name, Domain.team_id == ctx.team_id)):
        raise ApiError(409, "this domain is already registered", "domain_taken")
    # Another team may hold the same name: this row gets its own keys, token and flag, and
    # becomes ready only with its own token in DNS (ownership_contested).
    domain = generate_keys(body.name, ctx.team_id)
    db.add(domain)
    db.flush()
    publish_dkim_key(state.sync_redis, domain)
    return tagged(response, _out(domain, state, db))


@router.get("/{domain_id}", summary="One domain with per-record status (and its ETag)")
def get_domain(
    team_id: str, domain_id: str, ctx: TeamDomains, db: DbDep, state: StateDep, response: Response
) -> dict[str, Any]:
    return tagged(response, _out(_get(db, ctx.team_id, domain_id), state, db))


@router.post("/{domain_id}/verify", summary="Check the DNS records now")
def verify(
    team_id: str, domain_id: str, ctx: TeamDomains, db: DbDep, state: StateDep, response: Response
) -> dict[str, Any]:
    domain = _get(db, ctx.team_id, domain_id)

    def publish(event: DomainCheckEvent) -> None:
        state.producer.produce(Topic.DOMAIN_CHECKS, event, key=event.domain)

    verify_domain(db, domain, state.settings, state.sync_redis, publish)
    state.domain_cache.clear()
    return tagged(response, _out(domain, state, db))


@router.delete("/{domain_id}", summary="Remove a domain (the MTA stops signing for it)")
def delete_domain(
    team_id: str,
    domain_id: str,
    ctx: TeamDomains,
    db: DbDep,
    state: StateDep,
    if_match: IfMatch = None,
) -> dict[str, Any]:
    """With If-Match, only the version you looked at is removed (its records, keys)."""
    domain = _get(db, ctx.team_id, domain_id)
    check_if_match(if_match, _out(domain, state, db))
    withdraw_domain(state.sync_redis, domain)
    db.delete(domain)
    state.domain_cache.clear()
    return {"deleted": domain_id}
