"""DMARC report upload and email validation, mounted from the `deliverability` package.

The routers live with their domain logic in `deliverability/`; here they get the API's
authorization (one dependency, like every other route) and shared clients.
"""

from typing import Any

from fastapi import APIRouter, Depends

from api.deps import StateDep, require
from api.services.rbac import Action
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
