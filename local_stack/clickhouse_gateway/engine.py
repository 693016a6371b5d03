"""The chDB engine owned by the gateway: connection handles, their pool, and HTTP sessions.

chDB lets one process open a data dir, but that process may open any number of connection
handles to it; each handle has its own session context (current database, ``SET`` values,
temporary tables) and runs one statement at a time, releasing the GIL while the engine works.
So the gateway maps every concurrent anonymous request to a pooled handle and every HTTP
``session_id`` to a dedicated handle, and runs engine calls on worker threads.

Per-request settings arrive as URL parameters on every request (clickhouse-connect sends the
same handful each time), so a handle remembers what the gateway ``SET`` on it and only sends
the difference: steady-state requests cost no extra engine round trips.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import (
    BAD_ARGUMENTS,
    SESSION_IS_LOCKED,
    SESSION_NOT_FOUND,
    UNKNOWN_SETTING,
    ClickHouseError,
    from_engine,
)
from .sql import is_identifier, quote_identifier, quote_literal

log = logging.getLogger(__name__)

DEFAULT_DATABASE = "default"
DEFAULT_SESSION_TIMEOUT = 60
MAX_SESSION_TIMEOUT = 3600
_UNKNOWN = object()


class Handle:
    """One chDB connection and what the gateway knows about its session state."""

    def __init__(self, path: str) -> None:
        # Imported here, not at module load: chDB fixes its server timezone on import, and
        # serve() sets TZ first.
        from chdb import _chdb

        try:
            self.conn: Any = _chdb.connect(path)  # type: ignore[attr-defined]  # C extension, no stubs
        except RuntimeError as exc:
            raise from_engine(exc) from exc
        self.database: str | None = DEFAULT_DATABASE
        # Settings the gateway applied, name -> value (or _UNKNOWN after a user SET).
        self.applied: dict[str, object] = {}
        self.broken = False

    def query(self, sql: str | bytes, fmt: str = "TabSeparated", params: dict | None = None) -> Any:
        try:
            return self.conn.query(sql, fmt, params=params or {})
        except RuntimeError as exc:
            raise from_engine(exc) from exc

    def classify(self, sql: str) -> dict[str, Any]:
        return self.conn.classify_query(sql)

    def prepare(self, database: str | None, settings: dict[str, str]) -> None:
        """Bring the handle to the request's database and settings with minimal SET/USE."""
        if database is not None and database != self.database:
            self.query(f"USE {quote_identifier(database)}")
            self.database = database
        for name in [n for n in self.applied if n not in settings]:
            try:
                self.query(f"SET {name} = DEFAULT")
            except ClickHouseError:
                self.broken = True  # a value we cannot undo must not reach other requests
                raise
            del self.applied[name]
        for name, value in settings.items():
            if self.applied.get(name, _UNKNOWN) == value:
                continue
            if not is_identifier(name):
                raise ClickHouseError(
                    UNKNOWN_SETTING,
                    f"Setting {name!r} is neither a builtin setting nor a valid setting name",
                )
            self.query(f"SET {name} = {quote_literal(value)}")
            self.applied[name] = value

    def forget_state(self) -> None:
        """After USE/SET/... run by the user, re-apply everything next time."""
        self.database = None
        self.applied = dict.fromkeys(self.applied, _UNKNOWN)

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:
            log.debug("closing chDB handle failed", exc_info=True)


class Engine:
    """Owns the data dir for the process lifetime; hands out handles."""

    def __init__(self, data_dir: Path, database: str, *, max_idle: int = 16) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = str(data_dir.resolve())
        self._max_idle = max_idle
        self._idle: list[Handle] = []
        self._lock = threading.Lock()
        self._closed = False
        # The root handle keeps the engine open while pooled handles come and go.
        self._root = Handle(self.path)
        row = self._root.query("SELECT version(), timezone()").bytes().decode().strip()
        self.version, self.timezone = row.split("\t")
        self._seal_default_database()
        if database and database != DEFAULT_DATABASE:
            self._root.query(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}")

    def _seal_default_database(self) -> None:
        """chDB opens ``default`` as an Overlay whose Filesystem layer reads any unknown
        table name as a file path (``FROM '/etc/passwd'``, ``FROM Makefile``). Re-attach the
        same database (same UUID, same tables) as plain Atomic for this process's lifetime;
        chDB builds the Overlay again at the next start, so this runs every time."""
        row = self._root.query(
            "SELECT engine, toString(uuid) FROM system.databases WHERE name = 'default'"
        )
        found = row.bytes().decode().strip()
        if not found:
            return
        engine, uuid = found.split("\t")
        if engine != "Overlay":
            return
        self._root.query("DETACH DATABASE default")
        self._root.query(f"ATTACH DATABASE default UUID {quote_literal(uuid)} ENGINE = Atomic")

    def new_handle(self) -> Handle:
        if self._closed:
            raise ClickHouseError(BAD_ARGUMENTS, "The server is shutting down")
        return Handle(self.path)

    def acquire(self) -> Handle:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self.new_handle()

    def release(self, handle: Handle, *, discard: bool = False) -> None:
        with self._lock:
            if not discard and not self._closed and len(self._idle) < self._max_idle:
                self._idle.append(handle)
                return
        handle.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for handle in idle:
            handle.close()
        self._root.close()


@dataclass
class Session:
    session_id: str
    handle: Handle
    timeout: float
    expires_at: float = 0.0
    busy: bool = False
    closing: bool = False


class SessionManager:
    """HTTP sessions (``session_id``): one handle each, exclusive, expiring after idle timeout.

    Only used from the event-loop thread, so it needs no lock.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def acquire(self, session_id: str, timeout: float, *, check: bool) -> Session:
        session = self._sessions.get(session_id)
        now = time.monotonic()
        if session is not None and not session.busy and session.expires_at <= now:
            self._drop(session)
            session = None
        if session is None:
            if check:
                raise ClickHouseError(SESSION_NOT_FOUND, f"Session {session_id} not found")
            session = Session(session_id, self._engine.new_handle(), timeout)
            self._sessions[session_id] = session
        elif session.busy:
            raise ClickHouseError(
                SESSION_IS_LOCKED, f"Session {session_id} is locked by a concurrent client"
            )
        session.busy = True
        session.timeout = timeout
        return session

    def release(self, session: Session, *, close: bool = False) -> None:
        session.busy = False
        session.expires_at = time.monotonic() + session.timeout
        if close or session.closing:
            self._drop(session)

    def expire(self) -> int:
        now = time.monotonic()
        stale = [s for s in self._sessions.values() if not s.busy and s.expires_at <= now]
        for session in stale:
            self._drop(session)
        return len(stale)

    def _drop(self, session: Session) -> None:
        if self._sessions.get(session.session_id) is session:
            del self._sessions[session.session_id]
        session.handle.close()

    def close(self) -> None:
        for session in list(self._sessions.values()):
            if session.busy:
                session.closing = True
            else:
                self._drop(session)


def parse_session_timeout(raw: str | None) -> float:
    if raw is None or raw == "":
        return float(DEFAULT_SESSION_TIMEOUT)
    try:
        value = float(raw)
    except ValueError:
        raise ClickHouseError(BAD_ARGUMENTS, f"Invalid session timeout: '{raw}'") from None
    if value < 0:
        raise ClickHouseError(BAD_ARGUMENTS, f"Invalid session timeout: '{raw}'")
    if value > MAX_SESSION_TIMEOUT:
        raise ClickHouseError(
            BAD_ARGUMENTS,
            f"Session timeout {raw} is larger than max_session_timeout: {MAX_SESSION_TIMEOUT}. "
            "Maximum session timeout could be modified in configuration file",
        )
    return value
