"""`kibamail up` / `down`: the whole embedded stack, in dependency order.

Infrastructure first (Redis, the Kafka-protocol broker, the chDB gateway), then the
test internet (a provider-like SMTP sink and a loopback DNS server standing in for
recipients' MX hosts), then our own processes. Each start waits for its health check.
"""

from __future__ import annotations

from dataclasses import dataclass

import click

from kibamail.settings import Settings

from .services import flink_spec, kafka_spec, kibamail_spec, redis_spec, warehouse_spec
from .stack import ServiceSpec, Stack, StackError

# Stop order: consumers and producers before the services they talk to.
STOP_ORDER = [
    "dagster", "flink", "pipelines", "mta", "api", "api-outbox", "testnet", "warehouse",
    "kafka", "redis",
]  # fmt: skip

LOCAL_DNS_PORT = 10053
LOCAL_SINK_PORT = 10026


def local_profile(settings: Settings) -> Settings:
    """Point the MTA's outbound side at the test internet (no real internet here)."""
    if settings.mta.dns_servers:
        return settings
    mta = settings.mta.model_copy(
        update={
            "dns_servers": ["127.0.0.1"],
            "dns_port": LOCAL_DNS_PORT,
            "delivery_port": LOCAL_SINK_PORT,
        }
    )
    return settings.model_copy(update={"mta": mta})


@dataclass
class TestnetOptions:
    defer_share: float = 0.05
    bounce_share: float = 0.03
    record_file: str = ""
    # The local mailboxes (the sink keeps what it accepts) and each API sending domain's
    # DNS records (testing.testnet.api_zone): a newcomer's first email (README; `kibamail up`).
    mailbox_dir: str = ""  # "default": <state dir>/mailboxes
    publish_api_domains: bool = False


def testnet_spec(settings: Settings, options: TestnetOptions) -> ServiceSpec:
    args = [
        "testnet",
        "--smtp-port",
        str(settings.mta.delivery_port),
        "--dns-port",
        str(settings.mta.dns_port),
        "--defer-share",
        str(options.defer_share),
        "--bounce-share",
        str(options.bounce_share),
    ]
    if options.record_file:
        args += ["--record-file", options.record_file]
    mailbox = options.mailbox_dir
    if mailbox:
        default = str(settings.stack.state_dir / "mailboxes")
        args += ["--mailbox-dir", default if mailbox == "default" else mailbox]
    if options.publish_api_domains:
        args.append("--publish-api-domains")
    spec = kibamail_spec(settings, "testnet", args, settings.mta.delivery_port)
    spec.ports.append(settings.mta.dns_port)
    return spec


def api_outbox_spec(settings: Settings) -> ServiceSpec:
    """`kibamail api outbox`: healthy once its consumer group on the API outbox exists."""
    from kibamail.redis_keys import RedisKeys

    def healthy() -> bool:
        import redis

        client = redis.Redis.from_url(settings.redis.url, socket_timeout=1)
        try:
            groups = client.xinfo_groups(RedisKeys.API_EVENT_OUTBOX)
        except redis.ResponseError:  # no stream yet: the publisher has not started
            return False
        finally:
            client.close()
        wanted = RedisKeys.API_EVENT_OUTBOX_GROUP.encode()
        return any(group["name"] == wanted for group in groups)

    spec = kibamail_spec(settings, "api-outbox", ["api", "outbox"], 0)
    spec.ports, spec.health = [], healthy
    return spec


def app_specs(settings: Settings) -> dict[str, ServiceSpec]:
    specs = {
        "api": kibamail_spec(settings, "api", ["api"], settings.api.port, "/healthz"),
        "api-outbox": api_outbox_spec(settings),
        "mta": kibamail_spec(settings, "mta", ["mta"], settings.mta.metrics_port, "/metrics"),
        "pipelines": kibamail_spec(
            settings, "pipelines", ["pipelines"], settings.pipelines.metrics_port, "/metrics"
        ),
        "dagster": kibamail_spec(
            settings, "dagster", ["dagster"], settings.dagster.webserver_port, "/server_info"
        ),
    }
    # The webserver answers only after loading the code location (dbt manifest included),
    # which takes minutes on a busy 2-core machine.
    specs["dagster"].timeout_seconds = 300
    # Flink SQL reputation jobs (embedded mini-cluster): healthy once the job is RUNNING.
    specs["flink"] = flink_spec(settings)
    return specs


def start_infra(settings: Settings, stack: Stack, *, durable_redis: bool = True) -> None:
    from kibamail.clients import ensure_topics, migrate_warehouse

    stack.start(redis_spec(settings, durable=durable_redis))
    stack.start(kafka_spec(settings))
    ensure_topics(settings)
    stack.start(warehouse_spec(settings))
    migrate_warehouse(settings)


def start_stack(
    settings: Settings,
    *,
    with_app: bool = True,
    announce: bool = False,
    apps: list[str] | None = None,
    testnet: TestnetOptions | None = None,
) -> Stack:
    """Start (or find running) every service; raise StackError naming the cause."""
    settings = local_profile(settings)
    stack = Stack(settings.stack.state_dir)
    try:
        start_infra(settings, stack)
        if with_app:
            stack.start(testnet_spec(settings, testnet or TestnetOptions()))
            specs = app_specs(settings)
            names = list(apps or specs)
            if "api" in names and "api-outbox" not in names:  # tracking events need it
                names.insert(names.index("api") + 1, "api-outbox")
            for name in names:
                stack.start(specs[name])
    except StackError:
        stack.stop_all(order=STOP_ORDER)
        raise
    if announce:
        click.echo(describe(settings, with_app))
    return stack


def stop_stack(settings: Settings) -> list[str]:
    return Stack(settings.stack.state_dir).stop_all(order=STOP_ORDER)


def describe(settings: Settings, with_app: bool = True) -> str:
    ch = settings.clickhouse
    lines = [
        "Kibamail stack is up:",
        f"  Kafka bootstrap     {settings.kafka.bootstrap_servers}",
        f"  ClickHouse HTTP     {ch.http_url}  (database {ch.database})",
        f"  Redis               {settings.redis.url}",
        f"  Database            {settings.database.url}",
    ]
    if with_app:
        mta = settings.mta
        lines += [
            f"  API docs            {settings.api.public_url}/docs",
            f"  Dagster UI          http://127.0.0.1:{settings.dagster.webserver_port}",
            f"  SMTP submission     {mta.listen_host}:{mta.submission_port} (STARTTLS), "
            f"{mta.listen_host}:{mta.smtps_port} (TLS); inbound {mta.inbound_port}",
            f"  MTA metrics         http://127.0.0.1:{mta.metrics_port}/metrics",
            f"  Pipeline metrics    http://127.0.0.1:{settings.pipelines.metrics_port}/metrics",
            f"  Test internet       SMTP sink 127.0.0.1:{mta.delivery_port}, "
            f"DNS 127.0.0.1:{mta.dns_port}",
        ]
    lines.append(f"  Logs                {settings.stack.state_dir / 'logs'}")
    lines.append("Stop it with `make down`.")
    return "\n".join(lines)
