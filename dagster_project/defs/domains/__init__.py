"""Sender domains: the hourly DNS re-check (the only scheduler of it; the API worker's
own loop is gone). It re-verifies every domain due for a check through api.services.domains (the
API's database and deliverability.domain_checks), clears readiness at once when a required record
breaks, and emits the event and the Administrators' email for what started failing."""

from datetime import UTC, datetime

import dagster as dg

SCHEDULED_TIME_TAG = "dagster/scheduled_execution_time"


class DomainRecheckConfig(dg.Config):
    """Restrict the run to these domain names (still only when due); empty: all due."""

    domains: list[str] = []


def check_time(context: dg.OpExecutionContext) -> datetime:
    """The schedule tick time when there is one: a re-executed run then derives the same
    event ids, so the warehouse keeps one row per transition."""
    tick = context.run.tags.get(SCHEDULED_TIME_TAG)
    if tick:
        return datetime.fromisoformat(tick).astimezone(UTC)
    return datetime.now(UTC)


@dg.op(description="Re-check the DNS records of every sending domain due for a check.")
def recheck_sending_domains(
    context: dg.OpExecutionContext, config: DomainRecheckConfig
) -> dg.Output[dict[str, int]]:
    from api.db import make_engine, make_sessionmaker
    from api.services.domains import recheck_due_domains
    from deliverability.domain_alerts import KafkaEventPublisher
    from kibamail.clients import redis_client
    from kibamail.settings import get_settings

    settings = get_settings()
    engine = make_engine(settings.database.url)
    redis = redis_client(settings)
    try:
        counts = recheck_due_domains(
            make_sessionmaker(engine),
            settings,
            redis,
            KafkaEventPublisher(settings),
            check_time(context),
            names=config.domains,
        )
    finally:
        redis.close()
        engine.dispose()
    context.log.info(f"domain re-check: {counts}")
    if counts["errors"]:
        raise dg.Failure(
            description=f"{counts['errors']} domain(s) could not be re-checked; they stay due",
            metadata=counts,
        )
    return dg.Output(counts, metadata=counts)


@dg.job(description="Hourly sender-domain DNS re-check, alerts on checks that start failing.")
def domain_recheck() -> None:
    recheck_sending_domains()


domain_recheck_schedule = dg.ScheduleDefinition(
    job=domain_recheck,
    cron_schedule="20 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

defs = dg.Definitions(jobs=[domain_recheck], schedules=[domain_recheck_schedule])
