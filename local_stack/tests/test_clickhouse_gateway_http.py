"""The chDB gateway at the HTTP level: health endpoints, ClickHouse-format errors and status
codes, damaged/compressed/oversized bodies, ClickHouse block compression checked against the
engine's own on-disk blocks, GET read-only rules, auth, sessions and the process lifecycle."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import lz4.frame
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from local_stack.clickhouse_gateway.compression import NativeBlockDecoder, compress_native_blocks
from testing.clickhouse_gateway import RunningGateway, gateway_settings, start_gateway

pytestmark = pytest.mark.integration

ERROR_BODY = re.compile(
    r"^Code: (\d+)\. DB::Exception: .*\(([A-Z_]+)\) \(version 26\.\d+[^)]*\)\n$", re.S
)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    running = start_gateway(tmp_path_factory.mktemp("gateway-http"), database="kibamail_http")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(gateway: RunningGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=120) as client:
        yield client


def _error(resp: httpx.Response) -> tuple[int, int, str]:
    """(HTTP status, ClickHouse code, error name) after checking header and body agree."""
    match = ERROR_BODY.match(resp.text)
    assert match, resp.text
    assert resp.headers["x-clickhouse-exception-code"] == match.group(1)
    return resp.status_code, int(match.group(1)), match.group(2)


def test_health_endpoints(http: httpx.Client) -> None:
    assert http.get("/ping").text == "Ok.\n"
    assert http.get("/replicas_status").text == "Ok.\n"
    assert http.get("/").text == "Ok.\n"
    assert http.get("/play-nope").status_code == 404


def test_query_headers_and_formats(http: httpx.Client) -> None:
    resp = http.post("/", params={"query_id": "hdr-1"}, content=b"SELECT 1 AS x FORMAT JSON")
    assert resp.status_code == 200
    assert resp.headers["x-clickhouse-format"] == "JSON"
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.headers["x-clickhouse-query-id"] == "hdr-1"
    assert resp.headers["x-clickhouse-timezone"] in ("UTC", "Etc/UTC")
    assert resp.headers["x-clickhouse-server-display-name"]
    assert json.loads(resp.headers["x-clickhouse-summary"])["result_rows"] == "1"
    assert resp.json()["data"] == [{"x": 1}]
    ndjson = http.get("/", params={"query": "SELECT number FROM numbers(2)",
                                   "default_format": "JSONEachRow"})  # fmt: skip
    assert ndjson.text == '{"number":0}\n{"number":1}\n'
    binary = http.post("/", content=b"SELECT 1::UInt8 AS x FORMAT RowBinaryWithNamesAndTypes")
    assert binary.content == b"\x01\x01x\x05UInt8\x01"
    ddl = http.post("/", content=b"CREATE TABLE IF NOT EXISTS hdr (x UInt8) ENGINE = Memory")
    assert ddl.status_code == 200 and "x-clickhouse-format" not in ddl.headers


def test_response_compression_follows_accept_encoding(http: httpx.Client) -> None:
    query = b"SELECT number, toString(number) FROM numbers(100000) FORMAT TSV"
    plain = http.post("/", content=query).content
    for encoding in ("zstd", "gzip", "deflate"):
        resp = http.post("/", params={"enable_http_compression": "1"}, content=query,
                         headers={"Accept-Encoding": encoding})  # fmt: skip
        assert resp.headers["content-encoding"] == encoding
        assert resp.content == plain  # httpx decodes these; lz4 is checked below
    raw = httpx.Request("POST", http.base_url, params={"enable_http_compression": "1"},
                        content=query, headers={"Accept-Encoding": "lz4"})  # fmt: skip
    resp = http.send(raw, stream=True)
    body = b"".join(resp.iter_raw())
    assert lz4.frame.decompress(body) == plain
    not_enabled = http.post("/", content=query, headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in not_enabled.headers


@pytest.mark.parametrize(
    ("params", "body", "status", "code"),
    [
        ({}, b"SELEC 1", 400, 62),
        ({}, b"", 400, 62),
        ({}, b"SELECT * FROM no_such_table", 404, 60),
        ({"database": "no_such_db"}, b"SELECT 1", 404, 81),
        ({"max_threadz": "1"}, b"SELECT 1", 404, 115),
        ({}, b"SELECT no_such_function()", 404, 46),
        ({}, b"SELECT throwIf(1)", 500, 395),
        ({}, b"SELECT 1; SELECT 2", 400, 62),
        ({}, b"SELECT 1 INTO OUTFILE '/tmp/kibamail-gw-nope'", 501, 48),
        ({"readonly": "1"}, b"CREATE TABLE ro (x UInt8) ENGINE = Memory", 500, 164),
        ({"session_id": "nope", "session_check": "1"}, b"SELECT 1", 500, 372),
    ],
)
def test_errors_mirror_clickhouse(http: httpx.Client, params: dict, body: bytes, status: int,
                                  code: int) -> None:  # fmt: skip
    resp = http.post("/", params=params, content=body)
    assert _error(resp)[:2] == (status, code)
    assert http.get("/ping").text == "Ok.\n"


def test_get_is_read_only(http: httpx.Client) -> None:
    assert http.get("/", params={"query": "SELECT 41 + 1"}).text == "42\n"
    created = http.get("/", params={"query": "CREATE TABLE get_t (x UInt8) ENGINE = Memory"})
    assert _error(created)[1] == 164
    http.post("/", content=b"CREATE TABLE get_t (x UInt8) ENGINE = Memory")
    inserted = http.get("/", params={"query": "INSERT INTO get_t VALUES (1)"})
    assert _error(inserted)[1] == 164
    assert http.get("/", params={"query": "SELECT count() FROM get_t"}).text == "0\n"


def test_inserts_in_every_shape(http: httpx.Client) -> None:
    http.post(
        "/", content=b"CREATE TABLE shapes (id UInt32, s String) ENGINE = MergeTree ORDER BY id"
    )
    cases = [
        ({"query": "INSERT INTO shapes FORMAT TSV"}, b"1\tone\n", {}, 1),
        ({}, b"INSERT INTO shapes FORMAT CSV\n2,\"two, 2\"\n", {}, 1),
        ({}, b"INSERT INTO shapes (id, s) VALUES (3, 'three'), (4, 'it''s')", {}, 2),
        ({"query": "INSERT INTO shapes VALUES"}, b"(5, 'five')", {}, 1),
        ({}, gzip.compress(b'INSERT INTO shapes FORMAT JSONEachRow\n{"id":6,"s":"six"}\n'),
         {"Content-Encoding": "gzip"}, 1),
        ({"query": "INSERT INTO shapes FORMAT RowBinary"}, b"\x07\x00\x00\x00\x05seven", {}, 1),
        ({"query": "INSERT INTO shapes SELECT 8, 'eight'"}, b"", {}, 1),
    ]  # fmt: skip
    for params, body, headers, written in cases:
        resp = http.post("/", params=params, content=body, headers=headers)
        assert resp.status_code == 200, resp.text
        assert json.loads(resp.headers["x-clickhouse-summary"])["written_rows"] == str(written)
    rows = http.post("/", content=b"SELECT id, s FROM shapes ORDER BY id FORMAT JSONCompact").json()
    assert [tuple(r) for r in rows["data"]] == [
        (1, "one"), (2, "two, 2"), (3, "three"), (4, "it's"), (5, "five"), (6, "six"),
        (7, "seven"), (8, "eight"),
    ]  # fmt: skip


def test_chunked_multi_frame_lz4_insert(http: httpx.Client) -> None:
    http.post("/", content=b"CREATE TABLE frames_raw (n UInt64) ENGINE = MergeTree ORDER BY n")
    frames = [lz4.frame.compress(b"INSERT INTO frames_raw FORMAT TSV\n")]
    for k in range(30):
        tsv = b"".join(b"%d\n" % i for i in range(k * 10_000, (k + 1) * 10_000))
        frames.append(lz4.frame.compress(tsv))

    def body() -> Iterator[bytes]:  # split frames across chunk boundaries, chunked encoding
        data = b"".join(frames)
        for i in range(0, len(data), 7777):
            yield data[i : i + 7777]

    resp = http.post("/", content=body(), headers={"Content-Encoding": "lz4"})
    assert resp.status_code == 200, resp.text
    assert http.post("/", content=b"SELECT count(), sum(n) FROM frames_raw").text == (
        f"300000\t{300_000 * 299_999 // 2}\n"
    )


def test_damaged_bodies_fail_cleanly(http: httpx.Client) -> None:
    http.post("/", content=b"CREATE TABLE damaged (x UInt32) ENGINE = MergeTree ORDER BY x")
    insert = {"query": "INSERT INTO damaged FORMAT TSV"}
    good_frame = lz4.frame.compress(b"".join(b"%d\n" % i for i in range(50_000)))
    cases = [
        (insert, b"definitely not lz4" * 100, {"Content-Encoding": "lz4"}, 271),
        (insert, good_frame[:-20], {"Content-Encoding": "lz4"}, 271),
        (insert, b"1\n", {"Content-Encoding": "snappy-ish"}, 89),
        (insert, b"\x00" * 10, {"Content-Encoding": "zstd"}, 271),
        ({**insert, "decompress": "1"}, b"short", {}, 271),
        ({"query": "INSERT INTO damaged FORMAT Native"}, b"\x01\x05garbage" * 50, {}, None),
        ({"query": "INSERT INTO damaged FORMAT TSV"}, b"not-a-number\n", {}, None),
    ]
    for params, body, headers, code in cases:
        resp = http.post("/", params=params, content=body, headers=headers)
        status, got, _ = _error(resp)
        assert status >= 400
        if code is not None:
            assert got == code
    assert http.post("/", content=b"SELECT count() FROM damaged").text == "0\n"
    assert http.get("/ping").text == "Ok.\n"


def test_clickhouse_block_compression_matches_engine_blocks(
    gateway: RunningGateway, http: httpx.Client
) -> None:
    """Feed the engine's own on-disk compressed blocks (LZ4, ZSTD, NONE; CityHash128
    checksums) back as `decompress=1` bodies: only a faithful decoder reproduces the column."""
    http.post("/", content=(
        b"CREATE TABLE blocks (a UInt32 CODEC(LZ4), b UInt32 CODEC(ZSTD(1)), c UInt32 CODEC(NONE)) "
        b"ENGINE = MergeTree ORDER BY tuple() SETTINGS min_bytes_for_wide_part = 0"))  # fmt: skip
    http.post(
        "/",
        content=b"INSERT INTO blocks SELECT number, number * 2, number * 3 FROM numbers(300000)",
    )
    part = Path(http.post("/", content=b"SELECT path FROM system.parts WHERE table = 'blocks' "
                          b"AND database = currentDatabase() AND active").text.strip())  # fmt: skip
    for column, factor in (("a", 1), ("b", 2), ("c", 3)):
        blocks = (part / f"{column}.bin").read_bytes()
        http.post("/", content=f"CREATE TABLE copy_{column} (x UInt32) ENGINE = Memory".encode())
        resp = http.post("/", params={"query": f"INSERT INTO copy_{column} FORMAT RowBinary",
                                      "decompress": "1"}, content=blocks)  # fmt: skip
        assert resp.status_code == 200, resp.text
        total = http.post("/", content=f"SELECT count(), sum(x) FROM copy_{column}".encode()).text
        assert total == f"300000\t{factor * 300_000 * 299_999 // 2}\n"
    damaged = bytearray((part / "a.bin").read_bytes())
    damaged[len(damaged) // 2] ^= 0x55
    into_a = {"query": "INSERT INTO copy_a FORMAT RowBinary", "decompress": "1"}
    resp = http.post("/", params=into_a, content=bytes(damaged))
    assert _error(resp)[1] in (40, 271)  # checksum (or, if a header byte was hit, framing)
    # compress=1: the response comes back in the same framing.
    query = b"SELECT number FROM numbers(500000) FORMAT RowBinary"
    framed = http.post("/", params={"compress": "1"}, content=query).content
    decoder = NativeBlockDecoder()
    assert decoder.feed(framed) + decoder.finish() == http.post("/", content=query).content
    roundtrip = http.post("/", params=into_a, content=compress_native_blocks(b"\x01\0\0\0" * 10))
    assert roundtrip.status_code == 200


def test_session_locking_closing_and_expiry(http: httpx.Client) -> None:
    sid = f"lock-{uuid.uuid4()}"
    slow = threading.Thread(
        target=http.post,
        args=("/",),
        kwargs={
            "params": {"session_id": sid},
            "content": b"SELECT sleepEachRow(0.5) FROM numbers(6)",
        },
    )
    slow.start()
    codes = set()
    while slow.is_alive():
        resp = http.post("/", params={"session_id": sid}, content=b"SELECT 1")
        codes.add(_error(resp)[1] if resp.status_code != 200 else 0)
    slow.join()
    assert 373 in codes  # SESSION_IS_LOCKED while the slow query runs
    assert (
        http.post("/", params={"session_id": sid, "session_check": "1"}, content=b"SELECT 1").text
        == "1\n"
    )
    http.post("/", params={"session_id": sid, "close_session": "1"}, content=b"SELECT 1")
    closed = http.post("/", params={"session_id": sid, "session_check": "1"}, content=b"SELECT 1")
    assert _error(closed)[1] == 372
    short = f"short-{uuid.uuid4()}"
    http.post(
        "/", params={"session_id": short, "session_timeout": "1"}, content=b"SET max_threads = 1"
    )
    time.sleep(2.5)  # idle past its timeout; the reaper closes it
    expired = http.post(
        "/", params={"session_id": short, "session_check": "1"}, content=b"SELECT 1"
    )
    assert _error(expired)[1] == 372
    too_long = http.post(
        "/", params={"session_id": short, "session_timeout": "99999"}, content=b"SELECT 1"
    )
    assert _error(too_long)[1] == 36


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """A second gateway with a password and a 1 MiB body limit."""
    running = start_gateway(tmp_path_factory.mktemp("gateway-guarded"), name="warehouse-guarded",
                            password="s3cret", max_body_bytes=1 << 20)  # fmt: skip
    yield running
    running.stop()


def test_oversized_bodies_get_413(guarded: RunningGateway) -> None:
    auth = ("default", "s3cret")
    with httpx.Client(base_url=guarded.url, auth=auth, timeout=60) as http:
        http.post("/", content=b"CREATE TABLE sized (s String) ENGINE = Memory")
        big = b"x" * ((1 << 20) + 10) + b"\n"
        declared = http.post("/", params={"query": "INSERT INTO sized FORMAT TSV"}, content=big)
        assert _error(declared)[:3] == (413, 229, "QUERY_IS_TOO_LARGE")
        chunked = http.post("/", params={"query": "INSERT INTO sized FORMAT TSV"},
                            content=iter([big[:700_000], big[700_000:]]))  # fmt: skip
        assert _error(chunked)[:2] == (413, 229)
        assert http.post("/", content=b"SELECT count() FROM sized").text == "0\n"
        ok = http.post("/", params={"query": "INSERT INTO sized FORMAT TSV"}, content=b"small\n")
        assert ok.status_code == 200


def test_authentication(guarded: RunningGateway) -> None:
    client = guarded.client()
    assert client.command("SELECT 1") == 1
    with pytest.raises(DatabaseError) as wrong:
        guarded.client(password="wrong")
    assert wrong.value.code == 516
    url = guarded.url
    assert httpx.post(url, content=b"SELECT 1").status_code == 403
    assert _error(httpx.post(url, content=b"SELECT 1", auth=("bob", "s3cret")))[:2] == (403, 516)
    headers = {"X-ClickHouse-User": "default", "X-ClickHouse-Key": "s3cret"}
    assert httpx.post(url, content=b"SELECT 2", headers=headers).text == "2\n"
    assert (
        httpx.post(url, params={"user": "default", "password": "s3cret"}, content=b"SELECT 3").text
        == "3\n"
    )
    assert httpx.get(f"{url}/ping").text == "Ok.\n"  # health needs no credentials


def test_restart_keeps_data_and_data_dir_is_exclusive(tmp_path: Path) -> None:
    first = start_gateway(tmp_path / "a", name="warehouse-life")
    try:
        client = first.client()
        client.command("CREATE TABLE kept (x UInt32) ENGINE = MergeTree ORDER BY x")
        client.insert("kept", [[i] for i in range(1000)])
        rival = gateway_settings(tmp_path / "b", data_dir=first.settings.clickhouse.data_dir)
        from kibamail.settings import settings_to_env

        proc = subprocess.run([sys.executable, "-m", "local_stack.clickhouse_gateway"],
                              env=settings_to_env(rival) | {"PATH": "/usr/bin:/bin"},
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert proc.returncode != 0 and "only one process may own it" in proc.stderr
        assert client.command("SELECT count() FROM kept") == 1000  # the owner is unharmed
    finally:
        first.stop()
    log = first.stack.log_file("warehouse-life").read_text()
    assert "chDB closed" in log
    second = start_gateway(tmp_path / "a", name="warehouse-life")
    try:
        assert second.client().command("SELECT sum(x) FROM kept") == 999 * 1000 // 2
    finally:
        second.stop()
