"""`kibamail teams pauses list|lift|confirm|audit`: the operators' side of a team's sending pause.

Everything goes through kibamail.team_pauses (the same functions the Dagster ops call):
a lift or a confirmation needs a reason and an operator name, both audited.
"""

from __future__ import annotations

import getpass
import json
import re
from typing import Any

import click

from kibamail.settings import get_settings


def _redis() -> Any:
    from kibamail.clients import redis_client

    return redis_client(get_settings())


@click.group("teams")
def teams() -> None:
    """Operate on teams (sending pauses)."""


@teams.group("pauses")
def pauses() -> None:
    """Paused teams: list them with the evidence, lift or confirm a pause."""


@pauses.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_pauses(as_json: bool) -> None:
    """Every paused team with its score, components and sample subjects."""
    from kibamail.team_pauses import list_pauses as read_all

    records = read_all(_redis())
    for record in records:
        if as_json:
            click.echo(json.dumps(record.as_dict(), sort_keys=True))
            continue
        click.echo(
            f"{record.team_id}  {record.state}  since {record.paused_at or '?'}  "
            f"source {record.source}  score {record.score:.2f}"
        )
        click.echo(f"    reason: {record.reason}")
        if record.components:
            parts = ", ".join(f"{k}={v:g}" for k, v in sorted(record.components.items()))
            click.echo(f"    components: {parts}")
        for subject in record.sample_subjects:
            click.echo(f"    subject: {subject}")
        if record.review:
            click.echo(f"    review requested by {record.review['by']}: {record.review['note']}")
    if not as_json:
        click.echo(f"{len(records)} paused team(s)")


def _operator(value: str | None) -> str:
    return value or getpass.getuser()


@pauses.command("lift")
@click.argument("team_id")
@click.option("--reason", required=True, help="Why the pause is lifted (audited).")
@click.option("--operator", default=None, help="Who lifts it (default: the OS user).")
def lift_pause(team_id: str, reason: str, operator: str | None) -> None:
    """Lift a team's pause: team.unpaused is emitted and its scoring window reset."""
    from kibamail.team_pauses import PauseError, lift

    try:
        event = lift(_redis(), team_id, operator=_operator(operator), reason=reason)
    except PauseError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"lifted the pause of {team_id} (event {event.event_id})")


@pauses.command("confirm")
@click.argument("team_id")
@click.option("--reason", required=True, help="Why the pause stays (audited).")
@click.option("--operator", default=None, help="Who confirms it (default: the OS user).")
def confirm_pause(team_id: str, reason: str, operator: str | None) -> None:
    """Keep a team's pause, marked confirmed."""
    from kibamail.team_pauses import PauseError, confirm

    try:
        confirm(_redis(), team_id, operator=_operator(operator), reason=reason)
    except PauseError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"confirmed the pause of {team_id}")


_TEAM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _known_team(team_id: str) -> None:
    """Refuse a malformed id or one the API database does not know: the audit of a team
    that does not exist is a typo or a probe, never an empty answer."""
    if not _TEAM_ID.match(team_id):
        raise click.ClickException(f"not a team id: {team_id!r}")
    from api.db import make_engine, make_sessionmaker
    from api.models import Team

    engine = make_engine(get_settings().database.url)
    try:
        with make_sessionmaker(engine)() as db:
            if db.get(Team, team_id) is None:
                raise click.ClickException(f"unknown team {team_id}")
    finally:
        engine.dispose()


@pauses.command("audit")
@click.argument("team_id")
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1, 10_000))
def audit(team_id: str, limit: int) -> None:
    """The team's pause audit, newest first (one JSON object per line): the durable rows
    in ClickHouse plus recent decisions the sink has not written yet (durable=false)."""
    from kibamail.clients import clickhouse_client
    from kibamail.pause_audit import history

    _known_team(team_id)
    settings = get_settings()
    ch = clickhouse_client(settings)
    for entry in history(_redis(), ch, settings.clickhouse.database, team_id, limit):
        click.echo(json.dumps(entry, sort_keys=True))
