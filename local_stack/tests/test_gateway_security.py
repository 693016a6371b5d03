"""The chDB gateway is the warehouse and nothing else: a token guards it, and no query
reaches files, URLs or other hosts (table functions, engines, dictionary sources, file
paths as tables, INTO OUTFILE / FROM INFILE, backups)."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from kibamail.settings import Settings
from local_stack.clickhouse_gateway.server import serve
from local_stack.clickhouse_gateway.sql import external_source
from testing.clickhouse_gateway import RunningGateway, gateway_settings, start_gateway

TOKEN = "gateway-token-of-the-test"
ERROR = re.compile(r"^Code: (\d+)\. DB::Exception: .*\(([A-Z_]+)\) \(version [^)]*\)\n$", re.S)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    running = start_gateway(tmp_path_factory.mktemp("gateway-security"), name="warehouse-sec",
                            database="kibamail_sec", password=TOKEN)  # fmt: skip
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(gateway: RunningGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, auth=("default", TOKEN), timeout=60) as client:
        yield client


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback port that records whether anything connected (nothing may)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.5)
    yield sock
    sock.close()


def _error(resp: httpx.Response) -> tuple[int, int, str, str]:
    match = ERROR.match(resp.text)
    assert match, resp.text
    assert resp.headers["x-clickhouse-exception-code"] == match.group(1)
    return resp.status_code, int(match.group(1)), match.group(2), resp.text


def _nobody_connected(sock: socket.socket) -> bool:
    try:
        conn, _ = sock.accept()
    except TimeoutError:
        return True
    conn.close()
    return False


@pytest.mark.integration
def test_requests_without_the_token_are_refused(gateway: RunningGateway) -> None:
    url = gateway.url
    for auth in (None, ("default", ""), ("default", "wrong"), ("default", TOKEN + "x")):
        resp = httpx.post(url, content=b"SELECT 1", auth=auth)
        status, code, name, text = _error(resp)
        assert (status, code, name) == (403, 516, "AUTHENTICATION_FAILED")
        assert "Authentication failed" in text
    with pytest.raises(DatabaseError) as wrong:
        gateway.client(password="guessed")
    assert wrong.value.code == 516
    assert gateway.client().command("SELECT 1") == 1  # the token works through the client


@pytest.mark.integration
@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM file('/etc/passwd', 'LineAsString')",
        "SELECT file('/etc/passwd')",
        "SELECT * FROM `file`('/etc/passwd', 'LineAsString')",
        "SELECT * FROM filesystem('/etc')",
        "SELECT * FROM s3('http://127.0.0.1:9/bucket/x.csv', 'CSV')",
        "SELECT * FROM hdfs('hdfs://127.0.0.1:9/x', 'CSV', 'a String')",
        "SELECT * FROM mysql('127.0.0.1:9', 'db', 't', 'u', 'p')",
        "SELECT * FROM postgresql('127.0.0.1:9', 'db', 't', 'u', 'p')",
        "SELECT * FROM executable('id', 'TSV', 'a String')",
        "SELECT * FROM python(x)",
        "INSERT INTO FUNCTION file('/tmp/kibamail-gw-sec-insert.csv', 'CSV') SELECT 1",
        "CREATE TABLE k (a String) ENGINE = Kafka SETTINGS kafka_broker_list = '127.0.0.1:9'",
        "CREATE TABLE f (a String) ENGINE = File(CSV, '/tmp/kibamail-gw-sec-engine.csv')",
        "CREATE DATABASE fs ENGINE = Filesystem('/')",
        "CREATE TABLE d (a String) ENGINE = MergeTree ORDER BY a "
        "SETTINGS disk = disk(type = local, path = '/tmp/kibamail-gw-sec-disk/')",
        "BACKUP TABLE system.one TO File('/tmp/kibamail-gw-sec-backup')",
        "SELECT * FROM '/etc/passwd'",
    ],
)
def test_queries_reaching_files_are_refused(http: httpx.Client, query: str) -> None:
    status, code, name, text = _error(http.post("/", content=query.encode()))
    assert (status, code, name) == (403, 497, "ACCESS_DENIED")
    assert "refuses" in text and "passwd" not in text.split("refuses", 1)[1]
    assert not list(Path("/tmp").glob("kibamail-gw-sec-*"))


@pytest.mark.integration
def test_url_and_remote_never_connect(http: httpx.Client, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    for query in (
        f"SELECT * FROM url('http://127.0.0.1:{port}/x', 'CSV', 'a String')",
        f"SELECT * FROM remote('127.0.0.1:{port}', system.one)",
        f"SELECT * FROM remoteSecure('127.0.0.1:{port}', system.one)",
        "SELECT * FROM cluster('default', system.one)",
        f"CREATE TABLE u (a String) ENGINE = URL('http://127.0.0.1:{port}/x', CSV)",
        f"CREATE DICTIONARY dct (a UInt64) PRIMARY KEY a "
        f"SOURCE(HTTP(url 'http://127.0.0.1:{port}/x' format 'CSV')) LAYOUT(FLAT()) LIFETIME(0)",
    ):
        assert _error(http.post("/", content=query.encode()))[:3] == (403, 497, "ACCESS_DENIED")
    # Streamed inserts (the bytes after FORMAT go straight to chDB) are checked too.
    insert = f"INSERT INTO FUNCTION url('http://127.0.0.1:{port}/x', 'CSV', 'a String') FORMAT CSV"
    resp = http.post("/", params={"query": insert}, content=b"a\n")
    assert _error(resp)[:3] == (403, 497, "ACCESS_DENIED")
    assert _nobody_connected(listener)


@pytest.mark.integration
def test_into_outfile_and_from_infile_are_refused(http: httpx.Client, tmp_path: Path) -> None:
    target = tmp_path / "out.tsv"
    resp = http.post("/", content=f"SELECT 1 INTO OUTFILE '{target}'".encode())
    assert _error(resp)[:3] == (501, 48, "NOT_IMPLEMENTED")  # what clickhouse-server answers
    assert not target.exists()
    http.post("/", content=b"CREATE TABLE IF NOT EXISTS inf (a String) ENGINE = Memory")
    resp = http.post("/", content=b"INSERT INTO inf FROM INFILE '/etc/passwd' FORMAT LineAsString")
    assert _error(resp)[:2] == (501, 48)
    assert http.post("/", content=b"SELECT count() FROM inf").text == "0\n"


@pytest.mark.integration
def test_the_default_database_reads_no_file_paths(http: httpx.Client) -> None:
    """chDB's ``default`` database resolves unknown table names as files; not here."""
    for query in ("SELECT * FROM default.`/etc/passwd`", 'SELECT * FROM "/etc/passwd"'):
        status, code, _name, text = _error(http.post("/", content=query.encode()))
        assert (status, code) == (404, 60), text
        assert "root:" not in text
    engine = http.post("/", content=b"SELECT engine FROM system.databases WHERE name='default'")
    assert engine.text == "Atomic\n"


@pytest.mark.integration
def test_ordinary_queries_still_run(http: httpx.Client) -> None:
    http.post("/", content=b"CREATE TABLE IF NOT EXISTS links (url String) ENGINE = Memory")
    http.post("/", content=b"INSERT INTO links VALUES ('https://example.org/file(1)')")
    resp = http.post("/", content=b"SELECT domain(url), 'url(' AS s FROM links")
    assert resp.text == "example.org\turl(\n"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("query", "found"),
    [
        (b"SELECT * FROM file('/x')", "file"),
        (b"select * from FILE ('/x')", "file"),
        (b'SELECT * FROM "url"(1)', "url"),
        (b"SELECT * FROM s3Cluster(c, 'x')", "s3cluster"),
        (b"SELECT * FROM icebergS3('x')", "icebergs3"),
        (b"SELECT * FROM azureBlobStorage('x')", "azureblobstorage"),
        (b"SELECT * FROM file/* c */(1)", "file"),
        (b"CREATE TABLE t (a Int8) ENGINE Kafka SETTINGS x = 1", "kafka"),
        (b"CREATE TABLE t (a Int8) ENGINE = S3Queue('x', CSV)", "s3queue"),
        (b"CREATE TABLE t ENGINE = Distributed(c, db, t)", "distributed"),
        (b"RESTORE TABLE t FROM Disk('backups', 'x')", "RESTORE"),
        (b"SELECT 1 FROM t JOIN '/etc/passwd' ON 1", "a file path as a table"),
        (b"SELECT 'file(' AS s, url, domain(url) FROM t -- remote(", None),
        (b"CREATE TABLE t (file String) ENGINE = MergeTree ORDER BY file", None),
        (b"INSERT INTO t SELECT * FROM input('a String')", None),
    ],
)
def test_external_source_detection(query: bytes, found: str | None) -> None:
    assert external_source(query) == found


@pytest.mark.unit
def test_no_token_outside_development_does_not_serve(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path)  # development, empty password: allowed
    production = settings.model_copy(update={"environment": "production"})
    assert isinstance(production, Settings)
    with pytest.raises(SystemExit) as refused:
        serve(production)
    assert "refusing to serve the warehouse without a token" in str(refused.value)
    assert not (tmp_path / "chdb").exists()  # refused before opening the data dir
