"""The MTA's operational config (``settings.mta.policy_file``, TOML), validated by pydantic.

One file holds the policy chain (order + parameters), the queue's retry schedule, the
IP pools, the warm-up schedule and the traffic shaping per provider group, so an
operator changes behaviour without a code change. A bad file fails at start-up with
the exact field that is wrong.
"""

from __future__ import annotations

import tomllib
from datetime import date
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kibamail.contracts import TrafficKind


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QueueConfig(Strict):
    retry_base_seconds: float = Field(60.0, gt=0)
    retry_max_seconds: float = Field(3600.0, gt=0)
    max_age_seconds: float = Field(3 * 24 * 3600.0, gt=0)
    held_retry_seconds: float = Field(300.0, gt=0)
    # An entry unacknowledged this long belongs to a dead worker and is reclaimed.
    claim_idle_seconds: float = Field(120.0, gt=0)
    read_batch: int = Field(64, ge=1, le=1000)
    # A recipient whose final dot was sent but whose answer never came (its worker died,
    # the answer timed out, the connection dropped): "assume_delivered" (no duplicate,
    # unless the process dies in the instant between writing the dot and its marker; a
    # DATA-stage rejection in that instant is missed) or "resend" (classic at-least-once:
    # possible duplicate).
    in_doubt: Literal["assume_delivered", "resend"] = "assume_delivered"
    connect_timeout_seconds: float = Field(30.0, gt=0)
    command_timeout_seconds: float = Field(120.0, gt=0)


ProxyNetwork = IPv4Network | IPv6Network


class TrustedProxies(Strict):
    """Load balancers (addresses or networks) allowed to send a PROXY protocol header, per
    listener. A listener with entries takes connections only from them, and each must start
    with a PROXY v1/v2 header naming the real client; any other peer is refused with 554
    before a byte is read, so no client can choose the IP its limits and logs use. A listener
    without entries serves clients directly and refuses a PROXY header with 554."""

    submission: list[ProxyNetwork] = Field(default_factory=list)
    smtps: list[ProxyNetwork] = Field(default_factory=list)
    inbound: list[ProxyNetwork] = Field(default_factory=list)

    def for_listener(self, listener: str) -> tuple[ProxyNetwork, ...]:
        return tuple(getattr(self, listener))


def is_trusted(peer: str, networks: tuple[ProxyNetwork, ...]) -> bool:
    """``peer`` (an IP, maybe IPv4-mapped IPv6) is inside one of ``networks``."""
    try:
        address: IPv4Address | IPv6Address = ip_address(peer)
    except ValueError:
        return False
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


class SubmissionConfig(Strict):
    max_recipients: int = Field(100, ge=1)
    max_connections_per_ip: int = Field(50, ge=1)
    auth_fail_delay_seconds: float = Field(0.5, ge=0)
    auth_fail_delay_max_seconds: float = Field(5.0, ge=0)
    auth_lockout_after: int = Field(10, ge=1)
    auth_lockout_seconds: int = Field(900, ge=1)
    idle_timeout_seconds: float = Field(60.0, gt=0)
    # Listeners behind HAProxy: who may send a PROXY protocol header (TrustedProxies).
    trusted_proxies: TrustedProxies = TrustedProxies()
    # PEM files; empty: a self-signed cert generated into the state dir at start-up.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Inbound (port 25) accepts mail only for these domains (DSNs, ARF reports);
    # empty: the MTA hostname.
    inbound_domains: list[str] = Field(default_factory=list)
    # Local parts that receive DMARC aggregate/failure and SMTP TLS reports (the `rua`,
    # `ruf` and TLS-RPT addresses customers publish); `dmarc+<team id>@...` tags a team.
    report_mailboxes: list[str] = Field(default_factory=lambda: ["dmarc", "rua", "ruf", "tlsrpt"])

    @model_validator(mode="before")
    @classmethod
    def _no_blanket_proxy_switch(cls, data: Any) -> Any:
        if isinstance(data, dict) and "proxy_protocol" in data:
            raise ValueError(
                "proxy_protocol was replaced by [submission.trusted_proxies]: list the load "
                "balancers' addresses per listener (submission, smtps, inbound)"
            )
        return data


class PolicyEntry(BaseModel):
    """One unit of the chain: its name and its parameters (validated by the unit)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    enabled: bool = True

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class PoolConfig(Strict):
    kind: TrafficKind
    source_ips: list[str] = Field(min_length=1)


class WarmupConfig(Strict):
    # [day_number (1 = first day of the IP), messages per day per provider group]
    schedule: list[tuple[int, int]] = Field(default_factory=list)
    # Share of the day's cap allowed in any one hour.
    hourly_fraction: float = Field(0.25, gt=0, le=1)
    ip_start_dates: dict[str, date] = Field(default_factory=dict)

    def daily_cap(self, source_ip: str, today: date) -> int | None:
        """None: the IP is warmed up (or not under warm-up)."""
        start = self.ip_start_dates.get(source_ip)
        if start is None or not self.schedule:
            return None
        day = (today - start).days + 1
        cap = None
        for schedule_day, limit in sorted(self.schedule):
            if day >= schedule_day:
                cap = limit
        if cap is None:
            return sorted(self.schedule)[0][1]
        if day > max(d for d, _ in self.schedule):
            return None
        return cap


class ShapingConfig(Strict):
    max_connections: int = Field(20, ge=1)
    max_messages_per_connection: int = Field(100, ge=1)
    # 0 = unlimited
    messages_per_minute: int = Field(0, ge=0)


class MtaConfig(Strict):
    queue: QueueConfig = QueueConfig()
    submission: SubmissionConfig = SubmissionConfig()
    policies: list[PolicyEntry] = Field(default_factory=list)
    pools: dict[str, PoolConfig] = Field(default_factory=dict)
    warmup: WarmupConfig = WarmupConfig()
    # provider group -> recipient domains and MX host suffixes that belong to it
    provider_groups: dict[str, list[str]] = Field(default_factory=dict)
    shaping: dict[str, ShapingConfig] = Field(default_factory=lambda: {"default": ShapingConfig()})
    # Require TLS on outbound connections (False = opportunistic STARTTLS).
    require_outbound_tls: bool = False

    @model_validator(mode="after")
    def _check(self) -> MtaConfig:
        kinds: dict[TrafficKind, set[str]] = {}
        for pool in self.pools.values():
            kinds.setdefault(pool.kind, set()).update(pool.source_ips)
        shared = kinds.get(TrafficKind.TRANSACTIONAL, set()) & kinds.get(
            TrafficKind.MARKETING, set()
        )
        if shared:
            raise ValueError(f"transactional and marketing pools share IPs: {sorted(shared)}")
        if "default" not in self.shaping:
            raise ValueError("shaping needs a [shaping.default] section")
        return self

    def pool_for(self, kind: TrafficKind) -> tuple[str, PoolConfig] | None:
        for name, pool in self.pools.items():
            if pool.kind == kind:
                return name, pool
        return None

    def shaping_for(self, group: str) -> ShapingConfig:
        return self.shaping.get(group, self.shaping["default"])


class ConfigError(ValueError):
    """The policy file is missing or invalid; the message names the field."""


def load_config(path: Path) -> MtaConfig:
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"MTA policy file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    try:
        return MtaConfig.model_validate(raw)
    except ValidationError as exc:
        errors = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{path}: {errors}") from exc


@lru_cache(maxsize=8)
def cached_config(path: Path) -> MtaConfig:
    return load_config(path)


PolicyStage = Literal["submission", "delivery"]
