"""Alembic migrations started by several processes at once (API pods rolling out together,
a migrate Job beside them) upgrade once: real processes on one fresh MariaDB database and
one fresh SQLite file all succeed, the schema is there once, alembic_version is at head;
a migrator waits on a held lock and gives up (changing nothing) when it is never freed."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from alembic.script import ScriptDirectory

from api.db import MigrationLockTimeout, alembic_config, migrate
from kibamail.settings import REPO_ROOT

pytestmark = pytest.mark.integration

PROCESSES = 4
# Each process waits for the go file, so all of them reach Alembic together.
MIGRATOR = """
import sys, time
from pathlib import Path
from typing import Any
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.01)
from api.db import migrate
migrate(sys.argv[1])
"""


def head() -> str:
    return str(ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head())


def fresh_mariadb(mariadb_url: str) -> str:
    name = "race_" + uuid.uuid4().hex[:10]
    base, query = mariadb_url.split("?", 1)
    root = sqlalchemy.create_engine(base.rsplit("/", 1)[0] + "/")
    with root.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    root.dispose()
    return f"{base.rsplit('/', 1)[0]}/{name}?{query}"


def race(url: str, tmp_path: Path) -> list[subprocess.CompletedProcess[str]]:
    go = tmp_path / f"go-{uuid.uuid4().hex}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATOR, url, str(go)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    time.sleep(1.0)  # let every interpreter start and import; correctness does not depend on it
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


def assert_upgraded_once(url: str, results: list[subprocess.CompletedProcess[str]]) -> None:
    assert [r.returncode for r in results] == [0] * PROCESSES, [r.stderr[-2000:] for r in results]
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            versions = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
            tables = sqlalchemy.inspect(conn).get_table_names()
    finally:
        engine.dispose()
    assert versions == [(head(),)]
    assert len(tables) == len(set(tables))
    assert {"teams", "users", "api_keys", "alembic_version"} <= set(tables)


def test_processes_migrating_one_mariadb_database_at_once_upgrade_it_once(
    mariadb_url: str, tmp_path: Path
) -> None:
    url = fresh_mariadb(mariadb_url)
    assert_upgraded_once(url, race(url, tmp_path))


def test_processes_migrating_one_sqlite_file_at_once_upgrade_it_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'api.db'}"
    assert_upgraded_once(url, race(url, tmp_path))


def test_a_migrator_waits_for_the_lock_and_upgrades_after_it_is_freed(
    mariadb_url: str, tmp_path: Path
) -> None:
    url = fresh_mariadb(mariadb_url)
    engine = sqlalchemy.create_engine(url)
    name = "kibamail_migrate:" + url.split("/")[-1].split("?")[0]
    holder = engine.connect()
    assert holder.exec_driver_sql(f"SELECT GET_LOCK('{name}', 0)").scalar() == 1
    go = tmp_path / "go"
    go.touch()
    proc = subprocess.Popen(
        [sys.executable, "-c", MIGRATOR, url, str(go)], cwd=REPO_ROOT, text=True
    )
    try:
        waiting: list[Any] = []
        deadline = time.monotonic() + 120
        while not waiting and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            waiting = list(
                holder.exec_driver_sql(
                    "SELECT id FROM information_schema.processlist "
                    "WHERE info LIKE 'SELECT GET_LOCK%%'"
                ).all()
            )
        assert waiting, "the migrator never waited on the lock"
        assert "alembic_version" not in sqlalchemy.inspect(holder).get_table_names()
    finally:
        holder.exec_driver_sql(f"SELECT RELEASE_LOCK('{name}')")
        holder.close()
    assert proc.wait(timeout=300) == 0
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").all() == [(head(),)]
    engine.dispose()


def test_a_lock_never_freed_stops_the_migrator_and_changes_nothing(mariadb_url: str) -> None:
    """Someone holds the lock name on purpose (or a stuck migrator): no unlocked upgrade."""
    url = fresh_mariadb(mariadb_url)
    engine = sqlalchemy.create_engine(url)
    name = "kibamail_migrate:" + url.split("/")[-1].split("?")[0]
    with engine.connect() as holder:
        assert holder.exec_driver_sql(f"SELECT GET_LOCK('{name}', 0)").scalar() == 1
        with pytest.raises(MigrationLockTimeout):
            migrate(url, lock_timeout=1)
        assert sqlalchemy.inspect(holder).get_table_names() == []
    engine.dispose()


def test_a_held_sqlite_lock_file_stops_the_migrator(tmp_path: Path) -> None:
    import fcntl

    db = tmp_path / "api.db"
    with open(f"{db}.migrate-lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        with pytest.raises(MigrationLockTimeout):
            migrate(f"sqlite:///{db}", lock_timeout=1)
    # It never even connected: a fresh file's first connections race to switch it to WAL,
    # and SQLite refuses the loser at once ("database is locked") whatever its busy timeout.
    assert not db.exists()
    engine = sqlalchemy.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        assert sqlalchemy.inspect(conn).get_table_names() == []
    engine.dispose()
    migrate(f"sqlite:///{db}")  # freed: it upgrades
