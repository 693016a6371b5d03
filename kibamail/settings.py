"""One configuration object for every Kibamail process.

Everything is read from the environment (prefix ``KIBAMAIL_``, nested with ``__``),
so production points at real Kafka / ClickHouse / Redis / MySQL clusters without a
code change, e.g. ``KIBAMAIL_KAFKA__BOOTSTRAP_SERVERS=k1:9092,k2:9092``.
Defaults describe the local embedded stack started by ``kibamail up``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
# Known to everyone who reads this file: accepted only in environment "development".
DEV_SECRET_KEY = "dev-only-secret-change-me"


class KafkaSettings(BaseModel):
    bootstrap_servers: str = "127.0.0.1:19092"
    client_id: str = "kibamail"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    # Short session timeouts keep the first consumer-group join fast (Tansu needs it,
    # real Kafka is fine with it too).
    session_timeout_ms: int = 6000
    topic_partitions: int = 1
    topic_replication_factor: int = 1

    def client_config(self) -> dict[str, str | int | float | bool]:
        """librdkafka settings shared by every producer and consumer."""
        config: dict[str, str | int | float | bool] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            config["sasl.username"] = self.sasl_username
        if self.sasl_password:
            config["sasl.password"] = self.sasl_password
        return config


class ClickHouseSettings(BaseModel):
    """Where ClickHouse answers over HTTP: the chDB gateway locally, a cluster in production."""

    host: str = "127.0.0.1"
    port: int = 18123
    secure: bool = False
    username: str = "default"
    password: str = ""
    database: str = "kibamail"
    # Empty locally; a cluster name turns DDL into ON CLUSTER + Replicated engines.
    cluster: str = ""
    # Data dir owned by the single `kibamail warehouse` process (local stack only).
    data_dir: Path = REPO_ROOT / ".stack" / "chdb"

    @property
    def http_url(self) -> str:
        scheme = "https" if self.secure else "http"
        return f"{scheme}://{self.host}:{self.port}"


class RedisSettings(BaseModel):
    url: str = "redis://127.0.0.1:16379/0"
    # What an acknowledgement (SMTP 250, API 200/202) waits for (docs/architecture.md):
    # "aof_always": the server fsyncs its append-only file before replying (redis-server
    # --appendfsync always; concurrent writes share one fsync per event-loop turn);
    # "replica_wait": the intake also runs WAIT wait_replicas wait_timeout_ms and refuses
    # to acknowledge unless that many replicas have the write; "none": no guarantee (tests).
    durability: Literal["aof_always", "replica_wait", "none"] = "aof_always"
    wait_replicas: int = Field(default=1, ge=1)
    wait_timeout_ms: int = Field(default=1000, ge=1)
    # Redis Cluster (env KIBAMAIL_REDIS__CLUSTER=true): `url` names any master, the
    # clients discover the rest (kibamail.clients); keys follow kibamail.redis_keys' slot
    # groups. WAIT is per connection and a cluster client has one per node, so
    # "replica_wait" is refused there (docs/production.md, "Redis beyond one node").
    cluster: bool = False

    @model_validator(mode="after")
    def _cluster_durability(self) -> RedisSettings:
        if self.cluster and self.durability == "replica_wait":
            raise ValueError(
                "redis.durability=replica_wait is not supported with redis.cluster=true: "
                "use aof_always on every master (docs/production.md)"
            )
        return self


class DatabaseSettings(BaseModel):
    """Transactional database: SQLite locally, MySQL/MariaDB by URL."""

    url: str = f"sqlite:///{REPO_ROOT / '.stack' / 'kibamail.db'}"
    echo: bool = False


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 18000
    public_url: str = "http://127.0.0.1:18000"
    secret_key: str = DEV_SECRET_KEY
    max_request_bytes: int = 10 * 1024 * 1024
    workers: int = 1
    # Per-API-key token bucket: sustained requests/second and the burst above it.
    rate_limit_per_second: int = Field(default=1000, ge=1)
    rate_limit_burst: int = Field(default=2000, ge=1)
    # Webhook SSRF filter (api.webhooks.ssrf): lift only for tests and self-hosting.
    webhook_allow_http: bool = False
    webhook_allow_private: bool = False
    # Bearer token Prometheus sends for GET /metrics; empty: /metrics answers 404.
    metrics_token: str = ""


class SendingLimits(BaseModel):
    """Per-team send budget shared by every intake (API, batch, broadcast, SMTP), charged
    per recipient in the Redis counters of `kibamail.team_budget`. The MTA takes its own
    figures from its policy file (`rate_limit`, `bulk_gate`); keep both equal (a test
    checks the shipped defaults), since both charge the same counters."""

    per_second: float = Field(default=100, gt=0)
    burst: int = Field(default=200, ge=1)
    per_day: int = Field(default=1_000_000, ge=1)
    # A transactional send from a team whose bulk score is above this is refused.
    bulk_max_score: float = Field(default=0.9, ge=0, le=1)


class MtaSettings(BaseModel):
    hostname: str = "mta.kibamail.local"
    listen_host: str = "127.0.0.1"
    submission_port: int = 10587
    smtps_port: int = 10465
    inbound_port: int = 10025
    # Port used when connecting to recipients' MX hosts (25 in production).
    delivery_port: int = 25
    # Empty: system resolvers. Tests and the demo point this at the loopback DNS server.
    dns_servers: list[str] = Field(default_factory=list)
    dns_port: int = 53
    policy_file: Path = REPO_ROOT / "mta" / "config" / "policies.toml"
    max_message_bytes: int = 25 * 1024 * 1024
    metrics_port: int = 19101
    # Address /metrics binds to: loopback unless a Prometheus on another host scrapes it.
    metrics_host: str = "127.0.0.1"
    delivery_concurrency: int = 100  # measured: 100 beats 50 (bigger group commits)
    # The MTA process's async Redis pool: callers beyond the size wait up to the timeout
    # for a free connection (never a refusal); 0: 2 x delivery_concurrency + 20.
    redis_max_connections: int = Field(default=0, ge=0)
    redis_pool_timeout_seconds: float = Field(default=20.0, gt=0)
    # Accept backlog of each SMTP listener (a burst of connects beyond it goes un-greeted).
    listen_backlog: int = Field(default=4096, ge=1)
    # Keys the signed return path (VERP) of every delivery and the teams' DMARC rua tags
    # (kibamail.report_tokens): reports to unsigned addresses change nothing. Shared by the
    # API and every MTA process; changing it orphans reports to the old addresses.
    report_token_secret: str = "dev-only-report-secret-change-me"


class PipelineTuning(BaseModel):
    """Tuning knobs of the dataflows that are not connection settings; override with
    ``KIBAMAIL_PIPELINES__TUNING__<NAME>``, e.g.
    ``KIBAMAIL_PIPELINES__TUNING__MAPPING_RETRY_DELAYS_SECONDS='[1, 5]'``."""

    # A status can overtake the mapping write (different Redis replica, slow intake):
    # wait this long between lookups before dead-lettering (total ~ the sum, 52.5 s).
    # Dense at first: a mapping n seconds late is picked up at most ~2n/3 later (0.25 s
    # within the first half second), where [0.5, 2, 5, 15, 30] picked one 0.6 s late up
    # at 2.5 s and one 3 s late at 7.5 s. A miss costs 12 lookups instead of 5, each a
    # share of one batched MGET per shard and due time.
    mapping_retry_delays_seconds: list[float] = Field(
        default_factory=lambda: [0.25, 0.25, 0.5, 0.5, 1.0, 1.0, 2.0, 2.0, 5.0, 10.0, 15.0, 15.0]
    )
    # Shards of the retry state (keys of the stateful step; spreads retries over workers).
    retry_shards: int = 16
    kafka_batch_size: int = 5000
    # Bytewax snapshot/epoch interval: bounds replay after a crash.
    epoch_seconds: float = 2.0
    # Clicks on a different link of the same message within this many seconds are a scanner.
    scanner_click_seconds: float = 2.0
    # Per-message first-open/first-click state is forgotten after this much idle time.
    first_event_state_seconds: float = 14 * 24 * 3600
    # Bulk-behaviour scoring (per team, sliding window over submission time).
    scoring_window_seconds: float = 900.0
    scoring_min_messages: int = 30
    # Marketing and near-duplicate shares look at this many latest messages, so a blast
    # after hours of normal mail is seen within tens of messages, not diluted by them.
    scoring_recent_messages: int = 50
    scoring_pause_threshold: float = 0.7
    scoring_weight_marketing: float = 0.4
    scoring_weight_near_duplicate: float = 0.25
    scoring_weight_volume: float = 0.2
    scoring_weight_domain_spread: float = 0.15
    # Volume component: 0 at the team's baseline, 1 at this multiple of it.
    scoring_burst_factor: float = 5.0
    # Messages per window assumed for a team without history (new teams may send some).
    scoring_baseline_floor: float = 50.0
    scoring_baseline_hours: int = 24
    # Distinct recipient domains in the window that count as full spread.
    scoring_domain_spread_full: int = 20
    # Bodies whose simhashes differ in at most 3 bits are near-identical (4 x 16-bit bands).
    scoring_cooldown_seconds: float = 3600.0
    scoring_max_window_entries: int = 20_000
    # ClickHouse sink: wait between insert retries while ClickHouse is down (backpressure).
    sink_retry_max_seconds: float = 5.0
    # ClickHouse sink: plain fetches of the hot topic inserted as ArrowStream (False:
    # JSONEachRow only; the bench compares both).
    sink_arrow: bool = True


class PipelineSettings(BaseModel):
    workers: int = 1
    recovery_dir: Path = REPO_ROOT / ".stack" / "bytewax-recovery"
    geoip_database: Path | None = None
    metrics_port: int = 19102
    # Address /metrics binds to: loopback unless a Prometheus on another host scrapes it.
    metrics_host: str = "127.0.0.1"
    sink_batch_rows: int = 50_000
    sink_flush_seconds: float = 0.5
    # Bytewax cluster: every process's "host:port" (same list, same order, on every host)
    # and this one's index in it; empty: a single process. See pipelines/README.md.
    addresses: list[str] = Field(default_factory=list)
    process_id: int = 0
    # `kibamail flink` embedded mini-cluster: bound and advertised address, REST port.
    flink_host: str = "127.0.0.1"
    flink_rest_port: int = 18081
    tuning: PipelineTuning = PipelineTuning()


class NotificationSettings(BaseModel):
    """Platform mail (invitations, opt-in confirmations, domain alerts, digests).

    It is sent through our own MTA under a platform team id so customers are never billed
    for it; its sender domain must be verified like any customer's.
    """

    sender: str = "Kibamail <notifications@mta.kibamail.local>"
    team_id: str = "kibamail-system"
    # Caps per customer team on the platform mail its actions trigger (fixed hour/day
    # windows): a team must not turn our sender into its spam cannon. Over a cap the API
    # answers 429 with Retry-After (a CSV import defers the confirmations instead).
    invitations_per_hour: int = Field(default=20, ge=0)
    invitations_per_day: int = Field(default=100, ge=0)
    confirmations_per_hour: int = Field(default=500, ge=0)
    confirmations_per_day: int = Field(default=2000, ge=0)


class DagsterSettings(BaseModel):
    home: Path = REPO_ROOT / ".stack" / "dagster"
    webserver_port: int = 13000


class StackSettings(BaseModel):
    """The local embedded stack (`kibamail up`): where its state and logs live."""

    state_dir: Path = REPO_ROOT / ".stack"
    health_timeout_seconds: float = 60.0


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="KIBAMAIL_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    environment: str = "development"
    kafka: KafkaSettings = KafkaSettings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    redis: RedisSettings = RedisSettings()
    database: DatabaseSettings = DatabaseSettings()
    api: ApiSettings = ApiSettings()
    sending: SendingLimits = SendingLimits()
    mta: MtaSettings = MtaSettings()
    pipelines: PipelineSettings = PipelineSettings()
    dagster: DagsterSettings = DagsterSettings()
    notifications: NotificationSettings = NotificationSettings()
    stack: StackSettings = StackSettings()

    @model_validator(mode="after")
    def _refuse_dev_defaults(self) -> Settings:
        """Outside development the well-known defaults are an open door: a forgeable
        session/signing key, a warehouse anyone on the network may query."""
        if self.environment == "development":
            return self
        problems: list[str] = []
        if self.api.secret_key == DEV_SECRET_KEY:
            problems.append("api.secret_key is the development default (KIBAMAIL_API__SECRET_KEY)")
        if not self.clickhouse.password:
            problems.append("clickhouse.password is empty (KIBAMAIL_CLICKHOUSE__PASSWORD)")
        if self.mta.report_token_secret == MtaSettings.model_fields["report_token_secret"].default:
            problems.append(
                "mta.report_token_secret is the development default "
                "(KIBAMAIL_MTA__REPORT_TOKEN_SECRET)"
            )
        if problems:
            raise ValueError(
                f"refusing to start in environment {self.environment!r}: "
                + "; ".join(problems)
                + " (set them, or KIBAMAIL_ENVIRONMENT=development for local use)"
            )
        return self

    @model_validator(mode="after")
    def _durability_every_intake_honours(self) -> Settings:
        """``replica_wait`` is implemented by kibamail.intake's submit paths only: the API's
        one-round-trip send scripts, the broadcast hand-over and the SMTP group commit do not
        issue WAIT yet, so a process started with it would acknowledge unreplicated mail."""
        if self.redis.durability == "replica_wait":
            raise ValueError(
                "redis.durability=replica_wait is not honoured by every intake yet: use "
                "aof_always (redis-server --appendfsync always on the primary)"
            )
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once from the environment."""
    return Settings()


def settings_to_env(settings: Settings) -> dict[str, str]:
    """Flatten Settings into KIBAMAIL_* variables so child processes see the same config.

    Lists and dicts (nested models included) are passed as JSON, which pydantic-settings
    parses back; ``None`` values are left out so the child falls back to its default.
    """
    import json

    env: dict[str, str] = {"KIBAMAIL_ENVIRONMENT": settings.environment}
    for section_name in type(settings).model_fields:
        section = getattr(settings, section_name)
        if not hasattr(section, "model_dump"):
            continue
        for key, value in section.model_dump(mode="json").items():
            if value is None:
                continue
            var = f"KIBAMAIL_{section_name.upper()}__{key.upper()}"
            env[var] = json.dumps(value) if isinstance(value, list | dict) else str(value)
    return env
