"""Transactional database: one engine per process, Alembic migrations, session factory.

SQLite by default (WAL, so API workers and broadcast workers can share the file),
MySQL/MariaDB by URL. Every schema change is an Alembic revision under api/migrations.
"""

from __future__ import annotations

import fcntl
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# How long a migrator waits for another one to finish before it gives up.
MIGRATION_LOCK_TIMEOUT_SECONDS = 600


class MigrationLockTimeout(RuntimeError):
    """Another migrator held the migration lock for longer than the timeout."""


class Base(DeclarativeBase):
    """Declarative base of every API table."""


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    """Naive UTC: SQLite and MySQL DATETIME both drop the zone, so we never store one."""
    return datetime.now(UTC).replace(tzinfo=None)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str, echo: bool = False) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, echo=echo, connect_args={"check_same_thread": False, "timeout": 10}
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_recycle=3600, pool_size=10)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str, lock_timeout: int = MIGRATION_LOCK_TIMEOUT_SECONDS) -> None:
    """Upgrade the database at `url` to the newest revision (idempotent, and safe for many
    processes at once: see `migration_connection`)."""
    from alembic import command

    config = alembic_config(url)
    config.attributes["lock_timeout"] = lock_timeout
    command.upgrade(config, "head")


@contextmanager
def migration_connection(engine: Engine, timeout: int) -> Iterator[Connection]:
    """A connection for Alembic, holding the database's migration lock while Alembic reads
    alembic_version and upgrades.

    Several API processes (or a Job and the pods) starting at once would otherwise all see
    the old revision and run the same DDL. MariaDB/MySQL: GET_LOCK on the migration
    connection (named after the database, held by the session, freed if the process dies).
    SQLite: an exclusive flock on `<file>.migrate-lock` beside the database file (every
    SQLite user is on this host), taken before the connection opens: a fresh file's first
    connections switch it to WAL, and SQLite refuses that switch at once ("database is
    locked", no busy wait) while another connection is doing the same. Either way the
    lock is held before Alembic's transaction begins, so the winner's revision is what the
    next migrator reads.
    """
    if engine.dialect.name in ("mysql", "mariadb"):
        with engine.connect() as connection:
            name = "kibamail_migrate:" + str(connection.execute(text("SELECT DATABASE()")).scalar())
            got = connection.execute(
                text("SELECT GET_LOCK(:name, :timeout)"), {"name": name[:64], "timeout": timeout}
            ).scalar()
            connection.commit()
            if got != 1:
                raise MigrationLockTimeout(f"migration lock {name!r} not free after {timeout}s")
            try:
                yield connection
            finally:
                connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name[:64]})
                connection.commit()
        return
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        with engine.connect() as connection:
            yield connection
        return
    with open(f"{database}.migrate-lock", "a+b") as handle:
        _flock(handle.fileno(), timeout)
        try:
            with engine.connect() as connection:
                yield connection
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _flock(fd: int, timeout: int) -> None:
    """An exclusive flock, waiting at most `timeout` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise MigrationLockTimeout(f"migration lock not free after {timeout}s") from None
            time.sleep(0.05)
