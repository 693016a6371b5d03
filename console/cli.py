"""`kibamail <subcommand>`: every process of the platform starts the same way.

Imports are lazy so `kibamail --help` and small commands stay fast. The dev-only
commands (up, down, status, demo, warehouse serve, testnet) need the local stack and the
test harness, which a source checkout has and the installed wheel does not.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import click

from console.bounces import bounces
from console.deadletters import deadletters
from console.teams import teams
from kibamail.settings import get_settings


def require_source_checkout(command: str, *packages: str) -> None:
    """Stop a dev-only command with a readable error when its packages are not installed."""
    missing = [name for name in packages if importlib.util.find_spec(name) is None]
    if missing:
        raise click.ClickException(
            f"`kibamail {command}` is available from a source checkout only: it needs "
            f"{', '.join(missing)}, which the installed package does not include"
        )


@click.group()
def main() -> None:
    """Kibamail: email API + MTA + streaming pipelines + warehouse."""


@main.command()
@click.option("--with-app/--infra-only", default=True, help="Also start the app processes.")
def up(with_app: bool) -> None:
    """Start the embedded stack and keep it running; prints the URLs."""
    require_source_checkout("up", "local_stack")
    from local_stack.up import TestnetOptions, start_stack

    # Mailboxes and published domain records: a newcomer's first email (README).
    options = TestnetOptions(mailbox_dir="default", publish_api_domains=True)
    start_stack(get_settings(), with_app=with_app, announce=True, testnet=options)
    if with_app:  # platform mail (the sign-up verification link) reaches the mailboxes
        from console.demo import mark_platform_sender_ready

        mark_platform_sender_ready(get_settings())


@main.command()
def down() -> None:
    """Stop everything `kibamail up` started (by recorded PID)."""
    require_source_checkout("down", "local_stack")
    from local_stack.up import stop_stack

    stopped = stop_stack(get_settings())
    click.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@main.command()
def status() -> None:
    """Show which stack processes are running."""
    require_source_checkout("status", "local_stack")
    from local_stack.stack import Stack

    stack = Stack(get_settings().stack.state_dir)
    for name in stack.names():
        pid = stack.running_pid(name)
        click.echo(f"{name:12s} {'running pid ' + str(pid) if pid else 'not running'}")


@main.command()
@click.option("--messages", default=1000, show_default=True)
@click.option("--keep-running", is_flag=True, help="Leave the stack up afterwards.")
def demo(messages: int, keep_running: bool) -> None:
    """Run the main job end to end and print a summary read back from ClickHouse."""
    require_source_checkout("demo", "local_stack")
    from console.demo import run_demo

    sys.exit(run_demo(get_settings(), messages=messages, keep_running=keep_running))


@main.group()
def warehouse() -> None:
    """The ClickHouse side: the chDB gateway and schema migrations."""


@warehouse.command("serve")
def warehouse_serve() -> None:
    """Own the chDB data dir and serve ClickHouse's HTTP interface to every other process."""
    require_source_checkout("warehouse serve", "local_stack")
    from local_stack.clickhouse_gateway.server import serve

    serve(get_settings())


@warehouse.command("migrate")
def warehouse_migrate() -> None:
    """Apply pending ClickHouse migrations (local chDB gateway or a cluster)."""
    from kibamail.clients import migrate_warehouse

    applied = migrate_warehouse(get_settings())
    click.echo(f"applied: {', '.join(applied) or 'none (up to date)'}")


@main.command()
def topics() -> None:
    """Create the contract's Kafka topics if missing."""
    from kibamail.clients import ensure_topics

    created = ensure_topics(get_settings())
    click.echo(f"created: {', '.join(created) or 'none (all exist)'}")


@main.group(invoke_without_command=True)
@click.pass_context
def api(ctx: click.Context) -> None:
    """Run the HTTP API (FastAPI on uvicorn); `kibamail api migrate` only migrates."""
    if ctx.invoked_subcommand is None:
        from api.main import run

        run(get_settings())


@api.command("migrate")
def api_migrate() -> None:
    """Apply pending Alembic migrations to the API database (SQLite or MySQL/MariaDB)."""
    from api.db import migrate

    migrate(get_settings().database.url)
    click.echo("api database migrated")


@api.command("worker")
def api_worker() -> None:
    """Run broadcast jobs from the Redis job queue (start one per core, on any host)."""
    from api.jobs.worker import run

    run(get_settings())


@api.command("outbox")
@click.option(
    "--reclaim-idle-seconds",
    default=30.0,
    show_default=True,
    help="Take over a dead publisher's unacknowledged entries after this idle time.",
)
def api_outbox(reclaim_idle_seconds: float) -> None:
    """Publish the tracking outbox (opens, clicks, unsubscribes) to Kafka."""
    from api.outbox_worker import run

    run(get_settings(), reclaim_idle_seconds)


@api.command("webhooks")
def api_webhooks() -> None:
    """Consume the event stream into customer webhook deliveries and deliver them."""
    from api.webhooks.consumer import run

    run(get_settings())


@main.command()
@click.option(
    "--delivery/--no-delivery",
    default=True,
    help="Run delivery workers (--no-delivery: listeners only, e.g. acceptance benchmarks).",
)
@click.option(
    "--listeners/--no-listeners",
    default=True,
    help="Serve the SMTP ports (--no-listeners: an extra delivery-only worker process).",
)
def mta(delivery: bool, listeners: bool) -> None:
    """Run the MTA: SMTP submission/inbound listeners and delivery workers."""
    from mta.main import run

    run(get_settings(), delivery=delivery, listeners=listeners)


@main.command()
@click.option("--smtp-port", type=int, required=True)
@click.option("--dns-port", type=int, required=True)
@click.option("--defer-share", type=float, default=0.05, show_default=True)
@click.option("--bounce-share", type=float, default=0.03, show_default=True)
@click.option("--slow-share", type=float, default=0.0, show_default=True)
@click.option("--disconnect-share", type=float, default=0.0, show_default=True)
@click.option("--slow-seconds", type=float, default=2.0, show_default=True)
@click.option(
    "--record-file",
    type=click.Path(path_type=Path),
    default=None,
    help="Append one JSON line per answer: message_id, rcpt, answer_code, ts.",
)
@click.option(
    "--zone-file",
    type=click.Path(path_type=Path, exists=True),
    default=None,
    help="JSON zone: records, null_mx, nxdomain, servfail.",
)
@click.option(
    "--address",
    default="127.0.0.1",
    show_default=True,
    help="Listen address, also the A answer for MX hosts.",
)
@click.option("--seed", type=int, default=None)
@click.option(
    "--mailbox-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Write each accepted message to <dir>/<recipient>/<n>.eml.",
)
@click.option(
    "--publish-api-domains", is_flag=True, help="Answer each API sending domain's DNS records."
)
def testnet(
    smtp_port: int,
    dns_port: int,
    defer_share: float,
    bounce_share: float,
    slow_share: float,
    disconnect_share: float,
    slow_seconds: float,
    record_file: Path | None,
    zone_file: Path | None,
    address: str,
    seed: int | None,
    mailbox_dir: Path | None,
    publish_api_domains: bool,
) -> None:
    """Run the test internet: a provider-like SMTP sink and a loopback DNS server."""
    require_source_checkout("testnet", "testing", "local_stack")
    from testing.testnet import run

    run(
        smtp_port=smtp_port,
        dns_port=dns_port,
        defer_share=defer_share,
        bounce_share=bounce_share,
        slow_share=slow_share,
        disconnect_share=disconnect_share,
        slow_seconds=slow_seconds,
        record_file=record_file,
        zone_file=zone_file,
        address=address,
        seed=seed,
        mailbox_dir=mailbox_dir,
        publish_api_domains=publish_api_domains,
    )


@main.command()
def pipelines() -> None:
    """Run every Bytewax dataflow (correlation, enrichment, scoring, sinks)."""
    from pipelines.run import run

    run(get_settings())


@main.command()
@click.option("--jobmanager", default=None, help="host:port of a Flink cluster (else embedded).")
@click.option("--start-offsets", default=None, help="partition:offset,... to start from.")
@click.option("--end-offsets", default=None, help="partition:offset,... to stop at (bounded run).")
def flink(jobmanager: str | None, start_offsets: str | None, end_offsets: str | None) -> None:
    """Run the Flink SQL reputation jobs (pipelines/flink, its own uv project)."""
    from pipelines.flink_jobs import run

    options = {"start_offsets": start_offsets, "end_offsets": end_offsets}
    sys.exit(run(get_settings(), jobmanager=jobmanager, **options))


@main.command()
def dagster() -> None:
    """Run the Dagster webserver and daemon (the ops console)."""
    from dagster_project.serve import run

    sys.exit(run(get_settings()))


@main.command()
@click.option("--port", type=int, default=18080, show_default=True)
@click.option("--no-serve", is_flag=True, help="Only generate the docs site.")
def docs(port: int, no_serve: bool) -> None:
    """Generate the dbt docs (models, columns, tests, lineage) and serve them on loopback."""
    from dagster_project.docs import generate_docs, serve_docs

    site = generate_docs(get_settings())
    click.echo(f"dbt docs generated in {site}")
    if not no_serve:
        serve_docs(site, port)


@main.group()
def contracts() -> None:
    """Event contracts."""


@contracts.command("schema")
@click.option("--check", is_flag=True, help="Fail if the committed schemas differ.")
def contracts_schema(check: bool) -> None:
    """Write (or check) the committed JSON Schemas of every event."""
    from kibamail.schemas import write_schemas

    changed = write_schemas(check=check)
    if check and changed:
        click.echo(f"JSON Schemas drifted: {', '.join(changed)}", err=True)
        sys.exit(1)
    click.echo(json.dumps({"changed": changed}))


@main.group()
def dmarc() -> None:
    """DMARC aggregate/failure reports and SMTP TLS reports."""


@dmarc.command("parse")
@click.argument("files", nargs=-1, required=True)
@click.option("--json/--text", "as_json", default=True, help="JSON lines (default) or summaries.")
def dmarc_parse(files: tuple[str, ...], as_json: bool) -> None:
    """Print one JSON object per report; exit 1 if any file is not a valid report."""
    from deliverability.cli import parse_command

    sys.exit(parse_command(files, as_json, click.echo, lambda line: click.echo(line, err=True)))


@dmarc.command("ingest")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--team-id", default="", help="Team owning the reported domains.")
def dmarc_ingest(files: tuple[str, ...], team_id: str) -> None:
    """Parse and store reports in the warehouse (idempotent); one JSON result per file."""
    from deliverability.cli import ingest_command

    sys.exit(ingest_command(files, team_id, click.echo))


@dmarc.command("check-domain")
@click.argument("domain")
@click.option("--spf-include", required=True)
@click.option("--dkim-selector", required=True)
@click.option("--dkim-public-key", required=True, help="Base64 p= value of our DKIM key.")
@click.option("--return-path-host", default="")
@click.option("--return-path-target", default="")
@click.option("--dmarc-rua", default="")
@click.option("--nameserver", "nameservers", multiple=True, default=["127.0.0.1"])
@click.option("--dns-port", default=53, show_default=True)
def dmarc_check_domain(
    domain: str, nameservers: tuple[str, ...], dns_port: int, **expected: str
) -> None:
    """Check SPF/DKIM/DMARC/MX/return path; JSON per record; exit 0 only if ready."""
    from deliverability.cli import check_domain_command

    sys.exit(check_domain_command(domain, expected, list(nameservers), dns_port, click.echo))


@main.command("settings")
def show_settings() -> None:
    """Print the effective settings (secrets masked)."""
    data = get_settings().model_dump(mode="json")
    for section in data.values():
        if isinstance(section, dict):
            for key in list(section):
                if "password" in key or "secret" in key:
                    section[key] = "***" if section[key] else ""
    click.echo(json.dumps(data, indent=2, default=str))


main.add_command(deadletters)
main.add_command(bounces)
main.add_command(teams)

if __name__ == "__main__":
    main()
