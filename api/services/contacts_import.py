"""Streamed CSV import: rows are parsed as the body arrives and inserted in batches.

Bad rows (invalid email, unknown column, duplicate) are reported with the line number
where the record starts; good rows are imported. Into a double opt-in list, contacts are
imported `pending` and each gets the confirmation email (api.services.notifications, guarded per
contact, so a re-import of the same file mails nobody twice but does mail a contact whose
email a crashed first import never sent). The team's confirmation cap
(``NotificationSettings.confirmations_per_hour/day``) still applies: contacts beyond it are
imported `pending` but not mailed, and the report counts them as `confirmations_deferred`
(with `confirmations_retry_after`): importing the same file again once the window reopens
mails exactly those. Quoted fields may span lines (RFC 4180):
physical lines are joined until the quotes balance, so memory stays bounded by the batch
size and MAX_RECORD_CHARS, never by the file.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

from sqlalchemy import insert, select
from starlette.concurrency import run_in_threadpool

from api.db import new_id, utcnow
from api.errors import ApiError
from api.models import Contact
from api.services.notifications import CONFIRM_PURPOSE, send_confirmation
from api.state import AppState
from deliverability.validation import check_syntax_and_lists
from kibamail.redis_keys import RedisKeys

BATCH_ROWS = 2000
MAX_RECORD_CHARS = 64 * 1024  # one contact; an unclosed quote must not swallow the file
MAX_REPORTED_ERRORS = 1000
STANDARD_COLUMNS = {"email", "first_name", "last_name"}


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
    pending = ""
    async for chunk in chunks:
        pending += decoder.decode(chunk)
        *lines, pending = pending.split("\n")
        for line in lines:
            yield line + "\n"
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending


class UnterminatedRecord(ValueError):
    def __init__(self, line: int) -> None:
        super().__init__(
            f"quoted field starting on line {line} is not closed within "
            f"{MAX_RECORD_CHARS} characters; import stopped here"
        )
        self.line = line


def _ends_inside_quotes(line: str, in_quotes: bool) -> bool:
    """Whether a quoted field is still open after ``line`` (csv's default dialect: a quote
    opens a field only at its start; inside one, a doubled quote is a literal quote)."""
    if '"' not in line:
        return in_quotes
    at_field_start = not in_quotes
    i = 0
    while i < len(line):
        char = line[i]
        if in_quotes:
            if char == '"':
                if line.startswith('"', i + 1):
                    i += 1
                else:
                    in_quotes = False
        elif char == '"' and at_field_start:
            in_quotes = True
        at_field_start = not in_quotes and char == ","
        i += 1
    return in_quotes


async def csv_records(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[int, list[str]]]:
    """(first physical line number, fields) per CSV record; blank lines are skipped."""
    line_no = start = size = 0
    parts: list[str] = []
    in_quotes = False
    async for line in _lines(chunks):
        line_no += 1
        if not parts:
            if not line.strip():
                continue
            start = line_no
        parts.append(line)
        size += len(line)
        in_quotes = _ends_inside_quotes(line, in_quotes)
        if in_quotes:
            if size > MAX_RECORD_CHARS:
                raise UnterminatedRecord(start)
            continue
        record = "".join(parts)
        parts, size = [], 0
        yield start, next(csv.reader([record]))
    if parts:
        raise UnterminatedRecord(start)


def _insert(
    state: AppState, team_id: str, list_id: str, rows: list[dict[str, Any]], status: str
) -> tuple[set[str], list[tuple[str, str]]]:
    """Insert rows whose email is not on the list yet. Returns the emails skipped as
    duplicates, and (id, email) of every row of the batch now `pending` (new or not)."""
    with state.sessions() as db, db.begin():
        emails = [r["email"] for r in rows]
        existing = {
            email: (contact_id, current)
            for email, contact_id, current in db.execute(
                select(Contact.email, Contact.id, Contact.status).where(
                    Contact.list_id == list_id, Contact.email.in_(emails)
                )
            )
        }
        now = utcnow()
        fresh = [
            {
                **r,
                "id": new_id(),
                "team_id": team_id,
                "list_id": list_id,
                "status": status,
                "created_at": now,
            }
            for r in rows
            if r["email"] not in existing
        ]
        if fresh:
            db.execute(insert(Contact), fresh)
        pending = [(row["id"], row["email"]) for row in fresh if status == "pending"]
        pending += [
            (contact_id, email)
            for email, (contact_id, current) in existing.items()
            if current == "pending"
        ]
        return set(existing), pending


class Mailing(NamedTuple):
    """What one batch's confirmation emails came to."""

    mailed: int
    refused: list[tuple[str, str]]  # (email, reason): the email cannot be sent at all
    deferred: int = 0  # not sent: the team's confirmation cap is reached
    retry_after: int | None = None  # seconds until the cap's window reopens


def _never_mailed(state: AppState, contact_ids: list[str]) -> int:
    """How many of these contacts have no confirmation email yet (their guard is unset)."""
    pipe = state.sync_redis.pipeline(transaction=False)
    for contact_id in contact_ids:
        pipe.exists(RedisKeys.notification_sent(CONFIRM_PURPOSE, contact_id))
    return sum(not found for found in pipe.execute())


def mail_confirmations(
    state: AppState, team_id: str, list_name: str, contacts: list[tuple[str, str]]
) -> Mailing:
    """Confirmation emails for pending contacts. The guard per contact makes a repeat a
    no-op; once the team's cap is reached the rest are deferred, not tried one by one."""
    mailed, refused = 0, list[tuple[str, str]]()
    for index, (contact_id, email) in enumerate(contacts):
        try:
            sent = send_confirmation(
                state.sync_redis,
                state.settings,
                team_id=team_id,
                contact_id=contact_id,
                email=email,
                list_name=list_name,
                token=state.signer.dumps_timed(CONFIRM_PURPOSE, contact_id),
            )
        except ApiError as exc:
            if exc.status == 429:
                retry = int((exc.headers or {}).get("Retry-After", "3600"))
                rest = [cid for cid, _ in contacts[index:]]
                return Mailing(mailed, refused, _never_mailed(state, rest), retry)
            refused.append((email, exc.message))
            continue
        mailed += sent is not None
    return Mailing(mailed, refused)


async def import_csv(
    state: AppState,
    team_id: str,
    list_id: str,
    known_fields: set[str],
    chunks: AsyncIterator[bytes],
    *,
    confirm_list_name: str | None = None,
) -> dict[str, Any]:
    """``confirm_list_name``: the list is double opt-in: import as `pending` and mail each
    contact the confirmation link (None: import as `subscribed`)."""
    errors: list[dict[str, Any]] = []
    error_count = imported = 0
    batch: list[dict[str, Any]] = []
    batch_lines: dict[str, int] = {}
    header: list[str] | None = None

    warnings: list[dict[str, Any]] = []
    warning_count = 0

    def warn(line: int, email: str, reasons: list[str]) -> None:
        nonlocal warning_count
        warning_count += 1
        if len(warnings) < MAX_REPORTED_ERRORS:
            warnings.append({"line": line, "email": email, "message": "; ".join(reasons)})

    def report(line: int, message: str) -> None:
        nonlocal error_count
        error_count += 1
        if len(errors) < MAX_REPORTED_ERRORS:
            errors.append({"line": line, "message": message})

    confirmations = deferred = 0
    retry_after: int | None = None
    status = "pending" if confirm_list_name is not None else "subscribed"

    async def flush() -> None:
        nonlocal imported, confirmations, deferred, retry_after
        duplicates, pending = await run_in_threadpool(
            _insert, state, team_id, list_id, batch, status
        )
        imported += len(batch) - len(duplicates)
        for email in sorted(duplicates, key=lambda e: batch_lines[e]):
            report(batch_lines[email], f"{email} is already on this list")
        if confirm_list_name is not None and pending and retry_after is not None:
            ids = [contact_id for contact_id, _ in pending]  # the cap was reached earlier
            deferred += await run_in_threadpool(_never_mailed, state, ids)
        elif confirm_list_name is not None and pending:
            mailing = await run_in_threadpool(
                mail_confirmations, state, team_id, confirm_list_name, pending
            )
            confirmations += mailing.mailed
            deferred += mailing.deferred
            retry_after = mailing.retry_after
            for email, reason in mailing.refused:
                report(batch_lines[email], f"confirmation email for {email} refused: {reason}")
        batch.clear()
        batch_lines.clear()

    records = csv_records(chunks)
    while True:
        try:
            line_no, values = await anext(records)
        except StopAsyncIteration:
            break
        except UnterminatedRecord as exc:
            report(exc.line, str(exc))
            break
        if header is None:
            header = [h.strip().lower() for h in values]
            unknown = [h for h in header if h not in STANDARD_COLUMNS | known_fields]
            if "email" not in header:
                return {
                    "imported": 0,
                    "failed": 1,
                    "errors": [{"line": line_no, "message": "no email column"}],
                }
            if unknown:
                msg = f"unknown columns (define custom fields first): {', '.join(unknown)}"
                error = {"line": line_no, "message": msg}
                return {"imported": 0, "failed": 1, "errors": [error]}
            continue
        if len(values) != len(header):
            report(line_no, f"expected {len(header)} columns, found {len(values)}")
            continue
        record = dict(zip(header, values, strict=True))
        verdict = check_syntax_and_lists(record["email"].strip())
        if verdict.result == "invalid" or verdict.checks.get("disposable"):
            report(line_no, "; ".join(verdict.reasons))
            continue
        email = (verdict.normalized or record["email"].strip()).lower()
        if verdict.reasons:  # role account or likely typo: imported, but say so
            warn(line_no, email, verdict.reasons)
        if email in batch_lines:
            report(line_no, f"{email} appears twice in the file")
            continue
        batch_lines[email] = line_no
        batch.append(
            {
                "email": email,
                "first_name": record.get("first_name", "")[:200],
                "last_name": record.get("last_name", "")[:200],
                "fields": {k: v for k, v in record.items() if k in known_fields},
            }
        )
        if len(batch) >= BATCH_ROWS:
            await flush()
    if batch:
        await flush()
    result: dict[str, Any] = {
        "imported": imported,
        "failed": error_count,
        "errors": errors,
        "warned": warning_count,
        "warnings": warnings,
        "status": status,
    }
    if confirm_list_name is not None:
        result["confirmation_emails"] = confirmations
        result["confirmations_deferred"] = deferred
        if retry_after is not None:
            result["confirmations_retry_after"] = retry_after
    return result
