"""Unit tests of the gateway's pure parts: body codecs, ClickHouse block framing, SQL routing,
request conventions and error mapping. No processes, no engine."""

from __future__ import annotations

import asyncio
import base64
import gzip
import random
import zlib

import lz4.frame
import pytest
import zstandard
from clickhouse_connect.driver.compression import Lz4Compressor, ZstdCompressor

from local_stack.clickhouse_gateway import compression as comp
from local_stack.clickhouse_gateway.errors import ClickHouseError, from_engine, http_status
from local_stack.clickhouse_gateway.protocol import (
    content_type,
    credentials,
    parse_form,
    split_params,
)
from local_stack.clickhouse_gateway.pump import BodyTooLarge, ClientGone, pump
from local_stack.clickhouse_gateway.sql import (
    Incomplete,
    file_clause,
    first_keyword,
    output_format,
    split_insert,
)

pytestmark = pytest.mark.unit


def _blocks(n: int = 12, seed: int = 3) -> list[bytes]:
    rng = random.Random(seed)
    return [
        bytes(rng.getrandbits(8) % 7 for _ in range(rng.randrange(1, 20_000))) for _ in range(n)
    ]


def _feed_in_pieces(decoder: comp.Decoder, body: bytes, piece: int) -> bytes:
    out = [decoder.feed(body[i : i + piece]) for i in range(0, len(body), piece)]
    out.append(decoder.finish())
    return b"".join(out)


@pytest.mark.parametrize("piece", [1, 7, 4096, 1 << 30])
def test_lz4_body_of_many_frames_as_clickhouse_connect_sends_it(piece: int) -> None:
    blocks = _blocks()
    body = b"".join(Lz4Compressor().compress_block(b) for b in blocks)
    assert _feed_in_pieces(comp.content_decoder("lz4"), body, piece) == b"".join(blocks)


@pytest.mark.parametrize("piece", [3, 65536])
def test_zstd_gzip_deflate_xz_bodies_with_several_frames(piece: int) -> None:
    import bz2
    import lzma

    blocks = _blocks(5)
    raw = b"".join(blocks)
    bodies = {
        "zstd": b"".join(ZstdCompressor().compress_block(b) for b in blocks),
        "gzip": b"".join(gzip.compress(b) for b in blocks),  # multi-member gzip
        "deflate": zlib.compress(raw),
        "xz": lzma.compress(raw),
        "bz2": bz2.compress(raw),
        "identity": raw,
    }
    for name, body in bodies.items():
        assert _feed_in_pieces(comp.content_decoder(name), body, piece) == raw, name


def test_truncated_and_garbage_bodies_are_clickhouse_errors() -> None:
    frame = lz4.frame.compress(b"x" * 100_000)
    decoder = comp.content_decoder("lz4")
    decoder.feed(frame[:-10])
    with pytest.raises(ClickHouseError) as truncated:
        decoder.finish()
    assert truncated.value.code == 271 and truncated.value.status == 500
    for name in ("lz4", "zstd", "gzip", "deflate"):
        with pytest.raises(ClickHouseError) as garbage:
            comp.content_decoder(name).feed(b"this is not compressed at all" * 10)
        assert garbage.value.code == 271, name
    with pytest.raises(ClickHouseError) as unknown:
        comp.content_decoder("snappy-ish")
    assert unknown.value.code == 89


@pytest.mark.parametrize("piece", [1, 25, 1000, 1 << 30])
def test_native_block_framing_roundtrip_in_arbitrary_pieces(piece: int) -> None:
    raw = b"".join(_blocks(3))
    framed = comp.compress_native_blocks(raw, block_size=5000)
    assert len(framed) > 25 * (len(raw) // 5000)
    assert _feed_in_pieces(comp.NativeBlockDecoder(), framed, piece) == raw


def test_native_blocks_of_every_method_and_checksum_layout() -> None:
    payloads = {
        comp.METHOD_NONE: lambda d: d,
        comp.METHOD_LZ4: lambda d: __import__("lz4.block").block.compress(d, store_size=False),
        comp.METHOD_ZSTD: lambda d: zstandard.ZstdCompressor().compress(d),
    }
    raw = b"kibamail " * 1000
    body = b""
    for method, pack in payloads.items():
        payload = pack(raw)
        framed = comp._HEADER.pack(method, len(payload) + 9, len(raw)) + payload
        body += comp.block_checksum(framed) + framed
    assert comp.NativeBlockDecoder().feed(body) == raw * 3


def test_native_block_damage_is_detected() -> None:
    framed = bytearray(comp.compress_native_blocks(b"abc" * 10_000))
    framed[40] ^= 0xFF
    with pytest.raises(ClickHouseError) as bad:
        comp.NativeBlockDecoder().feed(bytes(framed))
    assert bad.value.code == 40  # CHECKSUM_DOESNT_MATCH
    # Without verification the damage surfaces as a decompression error or wrong size.
    good = comp.compress_native_blocks(b"abc" * 10_000)
    decoder = comp.NativeBlockDecoder()
    decoder.feed(good[:-3])
    with pytest.raises(ClickHouseError) as truncated:
        decoder.finish()
    assert truncated.value.code == 271
    huge = b"\0" * 16 + comp._HEADER.pack(comp.METHOD_LZ4, 0x7FFFFFFF, 10)
    with pytest.raises(ClickHouseError) as too_large:
        comp.NativeBlockDecoder().feed(huge)
    assert too_large.value.code == 39
    unknown = comp._HEADER.pack(0x33, 9 + 3, 3) + b"abc"
    with pytest.raises(ClickHouseError) as method:
        comp.NativeBlockDecoder().feed(comp.block_checksum(unknown) + unknown)
    assert method.value.code == 89


def test_response_encoders_are_single_streams_clients_can_read() -> None:
    data = b"".join(_blocks(4))
    for name in comp.RESPONSE_ENCODINGS:
        encoder = comp.response_encoder(name)
        body = b"".join(encoder.compress(data[i : i + 7000]) for i in range(0, len(data), 7000))
        body += encoder.flush()
        if name == "lz4":
            # clickhouse-connect's ResponseSource uses one LZ4FrameDecompressor for the body.
            decoder = lz4.frame.LZ4FrameDecompressor()
            assert decoder.decompress(body) == data and decoder.eof
        else:
            assert _feed_in_pieces(comp.content_decoder(name), body, 999) == data
    empty = comp.response_encoder("lz4")
    assert lz4.frame.decompress(empty.flush()) == b""


def test_accept_encoding_negotiation_follows_client_preference() -> None:
    assert comp.choose_response_encoding("lz4,zstd,br,gzip,deflate") == "lz4"
    assert comp.choose_response_encoding("br, gzip;q=0.8, zstd") == "gzip"
    assert comp.choose_response_encoding("zstd;q=0, deflate") == "deflate"
    assert comp.choose_response_encoding("br") is None
    assert comp.choose_response_encoding(None) is None


def test_split_insert_finds_data_after_format_and_its_newline() -> None:
    body = b"INSERT INTO db.t (a, `b c`) SETTINGS async_insert=0 FORMAT Native\r\n\x00\x01"
    split = split_insert(body, final=False, max_query_size=1000)
    assert split is not None
    assert split.statement == "INSERT INTO db.t (a, `b c`) SETTINGS async_insert=0"
    assert split.fmt == "Native" and body[split.data_offset :] == b"\x00\x01"
    # Blanks then data on the same line: data starts after the blanks.
    same_line = split_insert(b"INSERT INTO t FORMAT CSV  1,2\n", final=True, max_query_size=99)
    assert same_line is not None and same_line.data_offset == len(b"INSERT INTO t FORMAT CSV  ")
    values = split_insert(b"insert into t values (1,'a')", final=True, max_query_size=99)
    assert values is not None and values.fmt == "Values" and values.statement == "insert into t"


def test_split_insert_ignores_keywords_in_strings_comments_and_subqueries() -> None:
    tricky = [
        b"/* FORMAT Native */ SELECT 1",
        b"INSERT INTO t -- FORMAT JSON\n SELECT 'FORMAT CSV' FROM numbers(3)",
        b"INSERT INTO t SELECT * FROM values('a UInt8', 1)",
        b'SELECT "VALUES", `FORMAT` FROM t',
        b"WITH 1 AS x SELECT x",
    ]
    for query in tricky:
        assert split_insert(query, final=True, max_query_size=1 << 20) is None, query
    quoted = b"INSERT INTO t (s) /* VALUES */ FORMAT TSV\nx\ty\n"
    split = split_insert(quoted, final=True, max_query_size=1000)
    assert split is not None and split.fmt == "TSV" and quoted[split.data_offset :] == b"x\ty\n"


def test_split_insert_waits_for_more_bytes_at_chunk_boundaries() -> None:
    whole = b"INSERT INTO t FORMAT JSONEachRow\n{}"
    for cut in range(1, whole.index(b"\n") + 1):
        with pytest.raises(Incomplete):
            split_insert(whole[:cut], final=False, max_query_size=1000)
    split = split_insert(whole, final=False, max_query_size=1000)
    assert split is not None and split.fmt == "JSONEachRow"
    with pytest.raises(ClickHouseError) as too_long:
        split_insert(b"INSERT INTO t " + b" " * 2000, final=False, max_query_size=1000)
    assert too_long.value.code == 62


def test_output_format_detection() -> None:
    assert output_format(b"SELECT 1 FORMAT JSON") == "JSON"
    assert output_format(b"SELECT 1\n FORMAT Native SETTINGS max_threads = 1;") == "Native"
    assert output_format(b"SELECT format FROM t") is None
    assert output_format(b"SELECT x AS format FROM t") is None
    assert output_format(b"SELECT format('{}', 'a') FORMAT CSV") == "CSV"
    assert output_format(b"SELECT 'FORMAT JSON'") is None
    assert output_format(b"SELECT (SELECT 1 FORMAT JSON)") is None
    assert file_clause(b"SELECT 1 INTO OUTFILE '/tmp/x'") == "INTO OUTFILE"
    assert file_clause(b"SELECT 'INTO OUTFILE'") is None
    assert first_keyword(b"-- hi\n /* x */ use db") == "USE"


def test_url_parameters_split_into_binds_settings_and_transport() -> None:
    binds, settings = split_params({
        "query": "SELECT 1", "database": "d", "session_id": "s", "query_id": "q",
        "param_name": "it\\'s", "max_threads": "2", "enable_http_compression": "1",
        "wait_end_of_query": "1", "date_time_input_format": "best_effort", "readonly": "1",
    })  # fmt: skip
    assert binds == {"name": "it\\'s"}
    assert settings == {"max_threads": "2", "date_time_input_format": "best_effort"}


def test_credentials_from_headers_basic_auth_and_parameters() -> None:
    basic = "Basic " + base64.b64encode(b"alice:s3:cret").decode()
    assert credentials({"authorization": basic}, {}) == ("alice", "s3:cret")
    assert credentials({"x-clickhouse-user": "bob", "x-clickhouse-key": "k"}, {}) == ("bob", "k")
    assert credentials({}, {"user": "carol", "password": "p"}) == ("carol", "p")
    assert credentials({}, {}) == ("default", "")
    with pytest.raises(ClickHouseError):
        credentials({"authorization": "Bearer abc"}, {})


def test_multipart_form_fields_and_external_tables() -> None:
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="query"\r\n\r\n'
        f"SELECT {{x:String}}\r\n--{boundary}\r\nContent-Disposition: form-data; "
        f'name="param_x"\r\n\r\nh\u00e9llo\r\n--{boundary}--\r\n'
    ).encode()
    fields = parse_form(f"multipart/form-data; boundary={boundary}", body)
    assert fields == {"query": "SELECT {x:String}", "param_x": "h\u00e9llo"}
    external = body.replace(b'name="param_x"', b'name="t"; filename="t.tsv"')
    with pytest.raises(ClickHouseError) as err:
        parse_form(f"multipart/form-data; boundary={boundary}", external)
    assert err.value.code == 48


def test_error_mapping_and_engine_messages() -> None:
    assert [http_status(c) for c in (62, 60, 81, 115, 516, 194, 229, 48, 1002, 36)] == [
        400, 404, 404, 404, 403, 401, 413, 501, 500, 400
    ]  # fmt: skip
    err = from_engine(
        RuntimeError("Code: 60. DB::Exception: Table x.y does not exist. (UNKNOWN_TABLE)")
    )
    assert err.code == 60 and err.status == 404
    assert err.body("26.9.2.1") == (
        b"Code: 60. DB::Exception: Table x.y does not exist. (UNKNOWN_TABLE) (version 26.9.2.1)\n"
    )
    already = from_engine(
        RuntimeError("Code: 62. DB::Exception: bad. (SYNTAX_ERROR) (version 1.2)")
    )
    assert already.body("9") == b"Code: 62. DB::Exception: bad. (SYNTAX_ERROR) (version 1.2)\n"
    assert from_engine(RuntimeError("segfault-ish")).code == 1002
    assert content_type("JSONEachRow").startswith("application/x-ndjson")
    assert content_type("RowBinaryWithNamesAndTypes") == "application/octet-stream"
    assert content_type("TabSeparatedWithNames").startswith("text/tab-separated-values")


def _receiver(chunks: list[bytes], *, disconnect: bool = False):
    messages = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
    messages.append({"type": "http.disconnect"} if disconnect else
                    {"type": "http.request", "body": b"", "more_body": False})  # fmt: skip

    async def receive() -> dict:
        await asyncio.sleep(0)
        return messages.pop(0)

    return receive


async def test_pump_delivers_everything_in_order_in_large_pieces() -> None:
    chunks = [bytes([i % 251]) * 1000 for i in range(300)]
    got: list[bytes] = []

    async def slow_consumer(data: bytes) -> None:
        got.append(data)
        await asyncio.sleep(0.001)

    await pump(_receiver(chunks), slow_consumer, max_body=10**9, feed_bytes=10_000,
               max_queued=50_000)  # fmt: skip
    assert b"".join(got) == b"".join(chunks)
    assert all(len(piece) >= 10_000 for piece in got[:-1])


async def test_pump_limits_failures_and_disconnects() -> None:
    async def sink(data: bytes) -> None:
        return None

    with pytest.raises(BodyTooLarge) as big:
        await pump(_receiver([b"x" * 600] * 3), sink, max_body=1000, feed_bytes=100)
    assert big.value.size == 1200
    with pytest.raises(ClientGone):
        await pump(_receiver([b"x"] * 3, disconnect=True), sink, max_body=1000)

    async def broken(data: bytes) -> None:
        raise ClickHouseError(62, "bad data")

    with pytest.raises(ClickHouseError):
        await pump(_receiver([b"x" * 100] * 50), broken, max_body=10**6, feed_bytes=100)
