"""`kibamail deadletters list|replay`: what the platform gave up on, and sending it again."""

from __future__ import annotations

import json
import sys
from collections import Counter

import click

from kibamail.settings import get_settings


@click.group("deadletters")
def deadletters() -> None:
    """List and replay the dead-letter store (the kibamail_dead_letter topic)."""


@deadletters.command("list")
@click.option("--source", default="", help="Only letters from this source (topic or component).")
@click.option("--reason-prefix", default="", help="Only letters whose reason starts like this.")
@click.option("--limit", default=50, show_default=True, help="Newest N letters (0: all).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_letters(source: str, reason_prefix: str, limit: int, as_json: bool) -> None:
    """Show dead letters, newest last, with a count per source."""
    from kibamail.dead_letters import read_all, select

    letters = select(read_all(get_settings()), source=source, reason_prefix=reason_prefix)
    shown = letters[-limit:] if limit > 0 else letters
    for letter in shown:
        if as_json:
            click.echo(json.dumps(letter.as_dict()))
        else:
            click.echo(
                f"{letter.letter_id}  {letter.occurred_at}  {letter.source}  {letter.reason}"
            )
    if not as_json:
        counts = Counter(letter.source for letter in letters)
        summary = ", ".join(f"{name or '?'}: {n}" for name, n in sorted(counts.items()))
        click.echo(f"{len(letters)} dead letter(s){' (' + summary + ')' if summary else ''}")


@deadletters.command("replay")
@click.option("--id", "ids", multiple=True, help="A letter id (repeatable).")
@click.option("--source", default="", help="Every letter from this source topic.")
@click.option("--reason-prefix", default="", help="Only letters whose reason starts like this.")
@click.option("--force", is_flag=True, help="Replay letters replayed before, too.")
@click.option("--dry-run", is_flag=True, help="Say what would be replayed, change nothing.")
def replay_letters(
    ids: tuple[str, ...], source: str, reason_prefix: str, force: bool, dry_run: bool
) -> None:
    """Send chosen letters' original bytes back to their source topic (once per letter)."""
    from kibamail.clients import redis_client
    from kibamail.dead_letters import read_all, replay, select

    if not ids and not source:
        raise click.UsageError("name letters with --id or --source (not everything at once)")
    settings = get_settings()
    chosen = select(read_all(settings), ids=ids, source=source, reason_prefix=reason_prefix)
    missing = set(ids) - {letter.letter_id for letter in chosen}
    redis = redis_client(settings)
    try:
        result = replay(settings, chosen, redis, force=force, dry_run=dry_run)
    finally:
        redis.close()
    verb = "would replay" if dry_run else "replayed"
    click.echo(f"{verb} {len(result.replayed)}; already replayed {len(result.already_replayed)}")
    for letter_id, why in sorted(result.refused.items()):
        click.echo(f"refused {letter_id}: {why}", err=True)
    for letter_id in sorted(missing):
        click.echo(f"not found {letter_id}", err=True)
    sys.exit(1 if result.refused or missing else 0)
