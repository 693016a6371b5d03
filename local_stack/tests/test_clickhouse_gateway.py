"""The chDB gateway as clients use it: clickhouse-connect (and dbt-clickhouse's session usage)
against a real ``kibamail warehouse serve`` process on a free loopback port."""

from __future__ import annotations

import gzip
import random
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from testing.clickhouse_gateway import RunningGateway, start_gateway

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    running = start_gateway(tmp_path_factory.mktemp("gateway"), database="kibamail_gw")
    yield running
    running.stop()


def _plain(value: Any) -> Any:
    """Datetimes compare as naive UTC; everything else as is."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def test_handshake_reports_engine_version_timezone_and_database(gateway: RunningGateway) -> None:
    client = gateway.client()
    assert client.server_version.startswith("26.")
    assert client.command("SELECT timezone()") in ("UTC", "Etc/UTC")
    assert client.command("SELECT currentDatabase()") == "kibamail_gw"
    assert client.ping()
    databases = client.query("SELECT name FROM system.databases").result_columns[0]
    assert "kibamail_gw" in databases


ROUNDTRIP_DDL = """
CREATE TABLE {name} (
    id UInt64, s String, lc LowCardinality(String), n Nullable(Int32),
    ts DateTime64(3, 'UTC'), d Date, arr Array(String), m Map(String, UInt32),
    u UUID, dec Decimal(18, 4), flag Bool
) ENGINE = MergeTree ORDER BY id
"""


@pytest.mark.parametrize("compress", ["lz4", "zstd", "gzip", False])
def test_rows_roundtrip_exactly_with_every_compression(
    gateway: RunningGateway, compress: Any
) -> None:
    client = gateway.client(compress=compress)
    table = f"roundtrip_{compress or 'none'}"
    client.command(ROUNDTRIP_DDL.format(name=table))
    rng = random.Random(11)
    start = datetime(2026, 1, 1, 12, 0, 0, 123000)
    rows = [
        [
            i,
            f"s{i} \t tab \n newline 'q' \"dq\" \\ back \u65e5\u672c" * (i % 3),
            ("bounced", "delivered", "opened")[i % 3],
            None if i % 4 == 0 else rng.randint(-(2**31), 2**31 - 1),
            start + timedelta(milliseconds=i * 17),
            date(2026, 1, 1) + timedelta(days=i % 400),
            [f"a{j}" for j in range(i % 4)],
            {f"k{j}": j for j in range(i % 3)},
            uuid.UUID(int=rng.getrandbits(128)),
            Decimal(rng.randint(-(10**12), 10**12)) / 10_000,
            i % 2 == 0,
        ]
        for i in range(3000)
    ]
    summary = client.insert(table, rows)
    assert summary.written_rows == len(rows)
    back = client.query(f"SELECT * FROM {table} ORDER BY id").result_rows
    assert [_plain(list(r)) for r in back] == [_plain(r) for r in rows]


def test_large_multi_frame_insert_keeps_every_row(gateway: RunningGateway) -> None:
    """500k rows: clickhouse-connect sends ~2 MB blocks, each its own lz4 frame."""
    client = gateway.client(compress="lz4")
    client.command(
        "CREATE TABLE big (id UInt64, team LowCardinality(String), v Float64, s String) "
        "ENGINE = MergeTree ORDER BY id"
    )
    n = 500_000
    rows: list[list[Any]] = [
        [i, f"team_{i % 97}", i * 0.5, f"event-{i:08d}-payload"] for i in range(n)
    ]
    summary = client.insert("big", rows)
    assert summary.written_rows == n
    count, ids, values, chars, teams = client.query(
        "SELECT count(), sum(id), sum(v), sum(length(s)), uniqExact(team) FROM big"
    ).result_rows[0]
    assert count == n
    assert ids == n * (n - 1) // 2
    assert values == pytest.approx(sum(r[2] for r in rows))
    assert chars == sum(len(r[3]) for r in rows)
    assert teams == 97


def test_concurrent_writers_and_readers(gateway: RunningGateway) -> None:
    gateway.client().command(
        "CREATE TABLE concurrent (writer UInt8, seq UInt32, v UInt64) ENGINE = MergeTree "
        "ORDER BY (writer, seq)"
    )
    writers, batches, batch_rows = 4, 8, 5000
    total = writers * batches * batch_rows
    errors: list[BaseException] = []
    seen: dict[int, list[int]] = {}
    done = threading.Event()

    def write(writer: int) -> None:
        try:
            client = gateway.client(compress="lz4")
            for b in range(batches):
                base = b * batch_rows
                client.insert(
                    "concurrent",
                    [[writer, base + i, (base + i) * (writer + 1)] for i in range(batch_rows)],
                )
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    def read(reader: int) -> None:
        try:
            client = gateway.client()
            counts = seen.setdefault(reader, [])
            while not done.is_set():
                counts.append(int(client.command("SELECT count() FROM concurrent")))
                client.query("SELECT writer, sum(v) FROM concurrent GROUP BY writer")
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=read, args=(r,)) for r in range(2)]
    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in readers + threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    done.set()
    for t in readers:
        t.join(timeout=60)
    assert not errors, errors
    for counts in seen.values():
        assert counts and counts == sorted(counts) and counts[-1] <= total
    client = gateway.client()
    assert client.command("SELECT count() FROM concurrent") == total
    per_writer = dict(
        client.query("SELECT writer, sum(v) FROM concurrent GROUP BY writer").result_rows
    )
    n = batches * batch_rows
    assert per_writer == {w: (w + 1) * n * (n - 1) // 2 for w in range(writers)}


def test_query_parameters_bind_server_side(gateway: RunningGateway) -> None:
    tricky = "it's \\ a\ttab\nnewline 'quoted' \u65e5\u672c {x:String}"
    for form in (False, True):
        client = gateway.client(form_encode_query_params=form)
        row = client.query(
            "SELECT {s:String}, {a:Array(String)}, {d:DateTime64(3)}, "
            "{n:Nullable(Int32)}, {u:UInt64}",
            parameters={
                "s": tricky,
                "a": ["x", "y'z"],
                "d": datetime(2026, 3, 4, 5, 6, 7, 890000),
                "n": None,
                "u": 2**63,
            },
        ).result_rows[0]
        assert _plain(list(row)) == [
            tricky,
            ["x", "y'z"],
            datetime(2026, 3, 4, 5, 6, 7, 890000),
            None,
            2**63,
        ]
    client = gateway.client()
    client.command("CREATE TABLE IF NOT EXISTS param_target (x UInt8) ENGINE = Memory")
    assert (
        client.command("SELECT count() FROM {t:Identifier}", parameters={"t": "param_target"}) == 0
    )
    raw = httpx.post(
        gateway.url,
        params={"param_x": "a\\tb", "database": gateway.database},
        content=b"SELECT length({x:String}), {x:String} = concat('a', char(9), 'b')",
    )
    assert raw.status_code == 200 and raw.text == "3\t1\n"
    with pytest.raises(DatabaseError) as missing:
        client.query("SELECT {nope:String}")
    assert missing.value.code == 456  # UNKNOWN_QUERY_PARAMETER


def test_database_parameter_and_query_id(gateway: RunningGateway) -> None:
    admin = gateway.client()
    admin.command("CREATE DATABASE IF NOT EXISTS gw_other")
    admin.command("CREATE TABLE gw_other.only_here (x UInt32) ENGINE = MergeTree ORDER BY x")
    other = gateway.client(database="gw_other")
    other.insert("only_here", [[1], [2], [3]])
    assert other.command("SELECT sum(x) FROM only_here") == 6
    resp = httpx.post(gateway.url, params={"database": "gw_other", "query_id": "qid-42"},
                      content=b"SELECT count() FROM only_here")  # fmt: skip
    assert resp.text == "3\n" and resp.headers["x-clickhouse-query-id"] == "qid-42"
    auto = httpx.post(gateway.url, content=b"SELECT 1")
    assert uuid.UUID(auto.headers["x-clickhouse-query-id"])
    with pytest.raises(DatabaseError) as unknown:
        admin.command("SELECT count() FROM only_here")
    assert unknown.value.code == 60


def test_settings_apply_per_query_and_never_leak(gateway: RunningGateway) -> None:
    client = gateway.client()
    default = client.command("SELECT getSetting('max_block_size')")
    assert (
        client.command("SELECT getSetting('max_block_size')", settings={"max_block_size": 1234})
        == 1234
    )
    assert client.command("SELECT getSetting('max_block_size')") == default
    # A SET or USE sent without a session must not change what other requests see.
    assert httpx.post(gateway.url, content=b"SET max_block_size = 777").status_code == 200
    assert httpx.post(gateway.url, content=b"USE system").status_code == 200
    for _ in range(4):
        resp = httpx.post(
            gateway.url, content=b"SELECT getSetting('max_block_size'), currentDatabase()"
        )
        assert resp.text == f"{default}\tdefault\n"
    with pytest.raises(DatabaseError) as unknown:
        client.command("SELECT 1", settings={"max_blok_size": 1})
    assert unknown.value.code == 115


def test_dbt_style_session_keeps_state(gateway: RunningGateway) -> None:
    """dbt-clickhouse (driver: http) pins a `dbt::<uuid>` session and these settings."""
    dbt_settings = {"mutations_sync": "3", "alter_sync": "3", "lightweight_deletes_sync": "3",
                    "insert_distributed_sync": "1"}  # fmt: skip
    session = gateway.client(session_id=f"dbt::{uuid.uuid4()}", settings=dbt_settings)
    other = gateway.client()
    session.command("SET allow_nondeterministic_mutations = 1")
    assert session.command("SELECT getSetting('allow_nondeterministic_mutations')") == "true"
    assert other.command("SELECT getSetting('allow_nondeterministic_mutations')") == "false"
    session.command("CREATE TEMPORARY TABLE tmp_stage (x UInt8)")
    session.insert("tmp_stage", [[1], [2], [3]])
    assert session.command("SELECT sum(x) FROM tmp_stage") == 6
    with pytest.raises(DatabaseError):
        other.command("SELECT sum(x) FROM tmp_stage")
    assert (
        session.command("SELECT engine FROM system.databases WHERE name = database()") == "Atomic"
    )
    session.command(
        "CREATE TABLE model__new ENGINE = MergeTree ORDER BY x "
        "AS SELECT number AS x FROM numbers(10)"
    )
    session.command(
        "CREATE TABLE model ENGINE = MergeTree ORDER BY x AS SELECT number AS x FROM numbers(3)"
    )
    session.command("EXCHANGE TABLES model__new AND model")
    assert session.command("SELECT count() FROM model") == 10
    probe = session.query("SELECT * FROM ( \nSELECT x, toString(x) AS s FROM model \n) LIMIT 0")
    assert probe.column_names == ("x", "s") and [t.name for t in probe.column_types] == [
        "UInt64",
        "String",
    ]
    session.command("ALTER TABLE model DELETE WHERE x < 5")
    assert session.command("SELECT count() FROM model") == 5
    session.command("DELETE FROM model WHERE x = 9")
    assert session.command("SELECT count() FROM model") == 4


def test_formats_dataframes_and_arrow(gateway: RunningGateway) -> None:
    client = gateway.client()
    client.command(
        "CREATE TABLE frames (id UInt32, name String, score Float64) ENGINE = MergeTree ORDER BY id"
    )
    df = client.query_df("SELECT number::UInt32 AS id, concat('n', toString(number)) AS name, "
                         "number / 4 AS score FROM numbers(1000)")  # fmt: skip
    client.insert_df("frames", df)
    table = client.query_arrow("SELECT * FROM frames ORDER BY id")
    assert table.num_rows == 1000 and table.column("name")[999].as_py() == "n999"
    client.insert_arrow("frames", table)
    assert client.command("SELECT count(), sum(id) FROM frames") == ["2000", str(999 * 1000)]
    streamed = 0
    with client.query_rows_stream(
        "SELECT * FROM frames", settings={"max_block_size": 100}
    ) as stream:
        for _ in stream:
            streamed += 1
    assert streamed == 2000
    client.raw_insert("frames", ["id", "name", "score"], '5000,"csv, row",1.5\n', fmt="CSV")
    # raw_insert's compression names how the block already is compressed (Content-Encoding).
    client.raw_insert("frames", ["id", "name", "score"],
                      gzip.compress(b'{"id":5001,"name":"j","score":2}\n'),
                      fmt="JSONEachRow", compression="gzip")  # fmt: skip
    client.raw_insert("frames", None, "5002\ttsv\t3\n", fmt="TabSeparated")
    rows = client.query(
        "SELECT id, name, score FROM frames WHERE id >= 5000 ORDER BY id"
    ).result_rows
    assert rows == [(5000, "csv, row", 1.5), (5001, "j", 2.0), (5002, "tsv", 3.0)]
    json_text = client.raw_query("SELECT id FROM frames WHERE id = 5000", fmt="JSONEachRow")
    assert json_text == b'{"id":5000}\n'


DBT_PROFILE = """
gw:
  target: default
  outputs:
    default:
      type: clickhouse
      driver: http
      host: 127.0.0.1
      port: {port}
      schema: dbt_gw
      user: default
      password: ""
      threads: 2
      use_lw_deletes: true
"""
DBT_MODELS = {
    "m_table.sql": "select number as id, toString(number) as s from numbers({n})",
    "m_incremental.sql": (
        "{{{{ config(materialized='incremental', unique_key='id', order_by='id') }}}}\n"
        "select id, s from {{{{ ref('m_table') }}}}\n"
        "{{% if is_incremental() %}} where id > (select max(id) - 5 from {{{{ this }}}}) "
        "{{% endif %}}"
    ),
    "m_view.sql": (
        "{{{{ config(materialized='view') }}}}\n"
        "select count() as c from {{{{ ref('m_incremental') }}}}"
    ),
}


@pytest.mark.slow
def test_real_dbt_run_over_http_driver(gateway: RunningGateway, tmp_path: Path) -> None:
    """dbt-clickhouse 1.10 (driver: http): table, incremental (twice: the second run merges
    through a session temp table + lightweight deletes) and view models."""
    (tmp_path / "models").mkdir()
    (tmp_path / "dbt_project.yml").write_text(
        "name: gw\nversion: '1.0'\nprofile: gw\nmodels:\n  gw:\n    +materialized: table\n"
    )
    (tmp_path / "profiles.yml").write_text(DBT_PROFILE.format(port=gateway.port))
    dbt = Path(sys.executable).with_name("dbt")
    for n in (10, 20):
        for name, sql in DBT_MODELS.items():
            (tmp_path / "models" / name).write_text(sql.format(n=n))
        run = subprocess.run(
            [str(dbt), "run", "--project-dir", str(tmp_path), "--profiles-dir", str(tmp_path)],
            cwd=tmp_path, capture_output=True, text=True, timeout=280,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout[-3000:]
        client = gateway.client(database="dbt_gw")
        assert client.command("SELECT count(), uniqExact(id) FROM m_incremental") == [
            str(n),
            str(n),
        ]
        assert client.command("SELECT c FROM m_view") == n
