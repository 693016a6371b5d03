"""The policy chain: one small unit per policy, one interface, order/params from TOML.

Like Haraka plugins or KumoMTA policy modules, each unit looks at a ``PolicyContext``
and returns a ``Verdict``. ``submission`` units run while an SMTP client waits (a
reject becomes an SMTP reply); ``delivery`` units run in the delivery worker for every
intake and may hold a message (retried later, never dropped), fail some recipients, or
pick the pool and source IP. The first non-accept verdict stops the chain.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kibamail import team_budget
from kibamail.contracts import TrafficKind
from kibamail.redis_keys import RedisKeys
from kibamail.settings import SendingLimits
from kibamail.team_pauses import pause_reason

from . import metrics
from .coalesce import SingleFlight
from .config import ConfigError, MtaConfig, PolicyStage

if TYPE_CHECKING:
    from .sender_auth import PlatformSender

Action = Literal["accept", "reject", "hold", "fail"]


@dataclass
class PolicyContext:
    redis: Any
    stage: PolicyStage
    team_id: str
    kind: TrafficKind = TrafficKind.TRANSACTIONAL
    mail_from: str = ""
    sender_domain: str = ""
    recipients: list[str] = field(default_factory=list)
    recipient_domain: str = ""
    provider_group: str = "default"
    size: int = 0
    # None: not an SMTP submission (API/broadcast intakes authenticate elsewhere).
    authenticated: bool | None = None
    client_ip: str = ""
    pool: str = ""
    source_ips: list[str] = field(default_factory=list)
    source_ip: str = ""
    # A PipelineBatcher for reads (delivery workers): lookups share round trips.
    reads: Any = None
    # Source IP -> messages per minute for IP x provider pairs slowed by reputation.
    pace_per_minute: dict[str, float] = field(default_factory=dict)
    # Domains of the From: header (SMTP DATA; header_checked once they were read).
    from_domains: list[str] = field(default_factory=list)
    header_checked: bool = False


@dataclass(frozen=True)
class Verdict:
    action: Action = "accept"
    code: int = 250
    enhanced: str = ""
    text: str = ""
    retry_after: float = 0.0
    failed_recipients: dict[str, str] = field(default_factory=dict)

    @property
    def smtp_reply(self) -> str:
        return f"{self.code} {self.enhanced} {self.text}".strip()


ACCEPT = Verdict()


class FlagCache:
    """Per-process cache of flag keys (pause, domain ready) for ``ttl`` seconds.

    Saves a Redis round trip per message on the delivery path; a pause or a verified
    domain takes effect within ``ttl`` seconds in every process.
    """

    def __init__(self, ttl: float = 1.0) -> None:
        self.ttl = ttl
        self._values: dict[str, tuple[float, Any]] = {}
        self._lookups = SingleFlight()  # an expired key: one GET, not one per delivery

    async def get(self, redis: Any, key: str) -> Any:
        hit = self._values.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return await self._lookups.run(key, lambda: self._load(redis, key))

    async def _load(self, redis: Any, key: str) -> Any:
        value = await redis.get(key)
        if len(self._values) > 50_000:
            self._values.clear()
        self._values[key] = (time.monotonic() + self.ttl, value)
        return value

    async def get_many(self, redis: Any, keys: list[str]) -> list[Any]:
        """Like get, with one MGET for all the keys not cached."""
        now = time.monotonic()
        found: dict[str, Any] = {}
        missing = []
        for key in keys:
            hit = self._values.get(key)
            if hit is not None and hit[0] > now:
                found[key] = hit[1]
            else:
                missing.append(key)
        if missing:
            wanted = tuple(missing)
            found.update(await self._lookups.run(wanted, lambda: self._load_many(redis, wanted)))
        return [found[key] for key in keys]

    async def _load_many(self, redis: Any, keys: tuple[str, ...]) -> dict[str, Any]:
        # A cluster's MGET must stay in one slot: mget_nonatomic splits it per slot.
        mget = getattr(redis, "mget_nonatomic", redis.mget)
        values = dict(zip(keys, await mget(keys), strict=True))
        if len(self._values) > 50_000:
            self._values.clear()
        expires = time.monotonic() + self.ttl
        for key, value in values.items():
            self._values[key] = (expires, value)
        return values


async def redis_call(ctx: PolicyContext, build: Any) -> Any:
    """One command queued by ``build(pipe)``: through ``ctx.reads`` (sharing a round trip
    with other sessions' and deliveries' lookups) when there is one."""
    return (await redis_calls(ctx, build))[0]


async def redis_calls(ctx: PolicyContext, build: Any) -> list[Any]:
    """Every result of the commands ``build(pipe)`` queues (as redis_call). A cluster
    pipeline refuses MGET, so several keys are several GETs in one round trip."""
    if ctx.reads is not None:
        return await ctx.reads.run(build)
    pipe = ctx.redis.pipeline(transaction=False)
    build(pipe)
    return await pipe.execute()


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Policy:
    name: ClassVar[str] = ""
    stages: ClassVar[tuple[PolicyStage, ...]] = ("submission",)
    Params: ClassVar[type[BaseModel]] = Params

    def __init__(
        self,
        params: BaseModel,
        config: MtaConfig,
        flags: FlagCache | None = None,
        platform: PlatformSender | None = None,
    ) -> None:
        self.params = params
        self.config = config
        self.flags = flags or FlagCache()
        self.platform = platform  # the notification sender, from settings (sender_auth)

    async def check(self, ctx: PolicyContext) -> Verdict:
        raise NotImplementedError


class Authenticated(Policy):
    name = "authenticated"

    async def check(self, ctx: PolicyContext) -> Verdict:
        if ctx.authenticated is False:
            return Verdict("reject", 530, "5.7.0", "Authentication required")
        return ACCEPT


class TeamPausedParams(Params):
    temporary: bool = True


class TeamPaused(Policy):
    name = "team_paused"
    stages = ("submission", "delivery")
    Params = TeamPausedParams

    async def check(self, ctx: PolicyContext) -> Verdict:
        key = RedisKeys.team_paused(ctx.team_id)
        # The SMTP client gets the live answer; the delivery path may lag by the cache TTL.
        raw = await (
            self.flags.get(ctx.redis, key)
            if ctx.stage == "delivery"
            else redis_call(ctx, lambda pipe: pipe.get(key))
        )
        if not raw:
            return ACCEPT
        text = f"Sending is paused for this team: {pause_reason(raw)}"  # kibamail.team_pauses
        if ctx.stage == "delivery":
            return Verdict("hold", 451, "4.7.1", text, self.config.queue.held_retry_seconds)
        if self.params.temporary:  # type: ignore[attr-defined]
            return Verdict("reject", 451, "4.7.1", text)
        return Verdict("reject", 550, "5.7.1", text)


class RateLimitParams(Params):
    per_second: float = Field(gt=0)
    burst: int = Field(ge=1)
    per_day: int = Field(ge=1)


class RateLimit(Policy):
    """The team's send budget (kibamail.team_budget), per recipient: the same bucket and
    daily counter the API charges, so SMTP and the API together get one budget."""

    name = "rate_limit"
    Params = RateLimitParams

    async def check(self, ctx: PolicyContext) -> Verdict:
        p: Any = self.params
        limits = SendingLimits(per_second=p.per_second, burst=p.burst, per_day=p.per_day)
        cost = max(1, len(ctx.recipients))
        keys = team_budget.budget_keys(ctx.team_id)
        args = team_budget.budget_args(
            limits, cost, check_team=False, check_bulk=False, take_rate=True
        )
        # EVAL, not EVALSHA: works in a shared pipeline; Redis caches the compiled script.
        answer = await redis_call(
            ctx, lambda pipe: pipe.eval(team_budget.CHARGE_LUA, len(keys), *keys, *args)
        )
        status = int(answer[0])
        if status in (team_budget.RATE_LIMITED, team_budget.OVER_BURST):
            return Verdict("reject", 451, "4.7.1", "Rate limit exceeded, slow down and retry")
        if status in (team_budget.DAILY_CAP, team_budget.OVER_DAILY_CAP):
            return Verdict("reject", 451, "4.7.1", "Daily sending limit reached, retry tomorrow")
        return ACCEPT


class Suppression(Policy):
    name = "suppression"
    stages = ("delivery",)

    async def check(self, ctx: PolicyContext) -> Verdict:
        if not ctx.recipients:
            return ACCEPT
        key, members = RedisKeys.suppression(ctx.team_id), [r.lower() for r in ctx.recipients]
        flags = await redis_call(ctx, lambda pipe: pipe.smismember(key, members))
        failed = {
            r: "recipient is on the suppression list"
            for r, f in zip(ctx.recipients, flags, strict=True)
            if f
        }
        if ctx.kind == TrafficKind.MARKETING:  # unsubscribes stop marketing mail only
            unsubscribed = RedisKeys.marketing_suppression(ctx.team_id)
            flags = await redis_call(ctx, lambda pipe: pipe.smismember(unsubscribed, members))
            failed |= {
                r: "recipient unsubscribed from this team's marketing mail"
                for r, f in zip(ctx.recipients, flags, strict=True)
                if f and r not in failed
            }
        if failed:
            return Verdict("fail", 550, "5.7.1", "suppressed", failed_recipients=failed)
        return ACCEPT


class BulkGateParams(Params):
    max_score: float = Field(0.9, ge=0, le=1)


class BulkGate(Policy):
    """Transactional submissions that the scoring dataflow scored as bulk are refused."""

    name = "bulk_gate"
    Params = BulkGateParams

    async def check(self, ctx: PolicyContext) -> Verdict:
        if ctx.kind != TrafficKind.TRANSACTIONAL:
            return ACCEPT
        key = RedisKeys.reputation_throttle("bulk_score", ctx.team_id)
        raw = await redis_call(ctx, lambda pipe: pipe.get(key))
        if team_budget.bulk_score(raw) > self.params.max_score:  # type: ignore[attr-defined]
            return Verdict(
                "reject",
                550,
                "5.7.1",
                "Bulk-like traffic on the transactional stream; send it as a broadcast",
            )
        return ACCEPT


class DomainReady(Policy):
    name = "domain_ready"
    stages = ("delivery",)

    async def check(self, ctx: PolicyContext) -> Verdict:
        """Held unless the message's own team is ready for its sender domain: another
        team's verification of the same name counts for nothing."""
        key = RedisKeys.domain_ready(ctx.team_id, ctx.sender_domain)
        ready = await self.flags.get(ctx.redis, key)
        if ready in (b"1", "1"):
            return ACCEPT
        return Verdict(
            "hold",
            451,
            "4.7.1",
            f"sender domain {ctx.sender_domain} is not verified (SPF/DKIM/DMARC) for this team",
            self.config.queue.held_retry_seconds,
        )


class PoolChoice(Policy):
    """Transactional and marketing never share IPs (the config refuses overlapping pools)."""

    name = "pool_choice"
    stages = ("delivery",)

    async def check(self, ctx: PolicyContext) -> Verdict:
        found = self.config.pool_for(ctx.kind)
        if found is None:
            return Verdict(
                "hold",
                451,
                "4.3.0",
                f"no IP pool configured for {ctx.kind} mail",
                self.config.queue.held_retry_seconds,
            )
        ctx.pool, pool = found
        ctx.source_ips = list(pool.source_ips)
        ctx.source_ip = ctx.source_ips[0]
        return ACCEPT


REGISTRY: dict[str, type[Policy]] = {
    cls.name: cls
    for cls in (
        Authenticated,
        TeamPaused,
        RateLimit,
        Suppression,
        BulkGate,
        DomainReady,
        PoolChoice,
    )
}


class PolicyChain:
    def __init__(
        self, config: MtaConfig, flag_ttl: float = 1.0, platform: PlatformSender | None = None
    ) -> None:
        self.flags = FlagCache(flag_ttl)
        self.units: list[Policy] = []
        for entry in config.policies:
            cls = REGISTRY.get(entry.name)
            if cls is None:
                raise ConfigError(f"unknown policy {entry.name!r}; known: {sorted(REGISTRY)}")
            if not entry.enabled:
                continue
            try:
                params = cls.Params.model_validate(entry.params)
            except ValidationError as exc:
                raise ConfigError(f"policy {entry.name}: {exc}") from exc
            self.units.append(cls(params, config, self.flags, platform))

    def names(self, stage: PolicyStage) -> list[str]:
        return [u.name for u in self.units if stage in u.stages]

    def unit(self, name: str) -> Policy | None:
        """The enabled unit called ``name`` (e.g. to run one check early, at MAIL FROM)."""
        return next((u for u in self.units if u.name == name), None)

    async def run(self, ctx: PolicyContext) -> Verdict:
        for unit in self.units:
            if ctx.stage not in unit.stages:
                continue
            verdict = await unit.check(ctx)
            if verdict.action != "accept":
                metrics.POLICY_REJECTIONS.labels(unit.name, verdict.action).inc()
                return verdict
        return ACCEPT


def provider_group(config: MtaConfig, domain: str, mx_host: str = "") -> str:
    """Provider group of a recipient domain (by domain, then by MX host suffix)."""
    domain, mx_host = domain.lower(), mx_host.lower().rstrip(".")
    for group, patterns in config.provider_groups.items():
        for pattern in patterns:
            if pattern.startswith("."):
                if mx_host.endswith(pattern) or domain.endswith(pattern):
                    return group
            elif domain == pattern:
                return group
    return "default"


# Units in their own modules register themselves in REGISTRY (order: policies.toml).
from . import reputation, sender_auth, warmup  # noqa: E402, F401
