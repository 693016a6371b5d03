"""DMARC report upload and email validation, mounted from the `deliverability` package.

The routers live with their domain logic in `deliverability/`; here they get the API's
authorization (one dependency, like every other route) and shared clients.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from starlette.concurrency import run_in_threadpool

from api.deps import StateDep, TeamContext, TeamReports, require
from api.routers.deliverability import Cursor, Since, Until
from api.routers.pagination import Limit
from api.services import warehouse_reads as reads
from api.services.rbac import Action
from api.state import AppState
from deliverability.routes import build_dmarc_router, build_validation_router

_RESOLVERS: dict[tuple[tuple[str, ...], int], Any] = {}


def _resolver(state: StateDep) -> Any:
    """One resolver per nameserver set: the configured ones, else the system's."""
    import dns.resolver

    from deliverability.domain_checks import make_resolver

    mta = state.settings.mta
    key = (tuple(mta.dns_servers), mta.dns_port)
    if key not in _RESOLVERS:
        _RESOLVERS[key] = (
            make_resolver(list(mta.dns_servers), port=mta.dns_port)
            if mta.dns_servers
            else dns.resolver.Resolver()
        )
    return _RESOLVERS[key]


def _clickhouse(state: StateDep) -> Any:
    return state.warehouse()


_DOMAIN_ADMIN = Depends(require(Action.DOMAINS_MANAGE))


async def _uploading_team(team: Any = _DOMAIN_ADMIN) -> str:
    """Reports concern a team's sending domains: the same people who manage domains."""
    return str(team.team_id)


# Any key or member that may send may validate addresses (contact import uses it too).
validation_router = APIRouter(dependencies=[Depends(require(Action.SEND))])
validation_router.include_router(build_validation_router(_resolver))
dmarc_router = build_dmarc_router(_clickhouse, _uploading_team)


# Team-scoped DMARC and TLS-RPT reads of one of the team's sending domains (every member
# role; api.services.warehouse_reads): another team's domain, or none, is 404.
reads_router = APIRouter(prefix="/v1/teams/{team_id}/dmarc/domains/{domain}", tags=["dmarc"])
DomainName = Annotated[str, Path(pattern=r"^[A-Za-z0-9.-]{1,253}$")]


async def _own(state: AppState, ctx: TeamContext, domain: str) -> str:
    owned = await run_in_threadpool(reads.owned_domain, state, ctx.team_id, name=domain)
    return str(owned.name)


@reads_router.get("/daily", summary="DMARC pass/fail per day, source IP and reporter")
async def domain_daily(
    team_id: str,
    domain: DomainName,
    ctx: TeamReports,
    state: StateDep,
    since: Since = None,
    until: Until = None,
    cursor: Cursor = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    name = await _own(state, ctx, domain)
    first, last = reads.date_range(since, until)
    return await run_in_threadpool(
        reads.dmarc_daily, state, ctx.team_id, name, first, last, cursor, limit
    )


@reads_router.get("/failing-sources", summary="The sources failing DMARC most, as this domain")
async def failing_sources(
    team_id: str,
    domain: DomainName,
    ctx: TeamReports,
    state: StateDep,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> dict[str, Any]:
    name = await _own(state, ctx, domain)
    first, last = reads.date_range(since, until)
    rows = await run_in_threadpool(
        reads.dmarc_failing_sources, state, ctx.team_id, name, first, last, limit
    )
    return {"domain": name, "from": first.isoformat(), "to": last.isoformat(), "data": rows}


@reads_router.get("/tls-reports", summary="SMTP TLS reports (RFC 8460) received for the domain")
async def tls_reports(
    team_id: str,
    domain: DomainName,
    ctx: TeamReports,
    state: StateDep,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    name = await _own(state, ctx, domain)
    return await run_in_threadpool(reads.tls_reports, state, ctx.team_id, name, cursor, limit)


@reads_router.get("/forensic-reports", summary="DMARC failure reports (RFC 6591) received")
async def forensic_reports(
    team_id: str,
    domain: DomainName,
    ctx: TeamReports,
    state: StateDep,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    name = await _own(state, ctx, domain)
    return await run_in_threadpool(reads.forensic_reports, state, ctx.team_id, name, cursor, limit)
