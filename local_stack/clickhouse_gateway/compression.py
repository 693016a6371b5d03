"""Streaming request decoders and response encoders for the ClickHouse HTTP interface.

Two layers, applied in ClickHouse's order:

* HTTP ``Content-Encoding`` (request) / ``Accept-Encoding`` + ``enable_http_compression``
  (response): lz4 *frame*, zstd, gzip, deflate, xz, bz2. clickhouse-connect compresses every
  insert block as its own lz4 (or zstd) frame, so a body is many concatenated frames; the
  decoders restart after each frame ends. Responses are one frame, which is all
  clickhouse-connect's streaming decompressor accepts.
* ClickHouse's own block framing (``decompress=1`` request / ``compress=1`` response): per
  block a 16-byte CityHash128 of the rest, 1 method byte (0x82 lz4, 0x90 zstd, 0x02 none),
  4-byte compressed size (header included), 4-byte uncompressed size, payload.

Every decoder is fed wire chunks of any size and raises ``ClickHouseError`` on damage, so a
broken body becomes a clean error response for that request only.
"""

from __future__ import annotations

import bz2
import lzma
import struct
import zlib
from collections.abc import Callable
from typing import Any, Protocol

import lz4.block
import lz4.frame
import zstandard
from clickhouse_cityhash.cityhash import CityHash128

from .errors import (
    CANNOT_DECOMPRESS,
    CHECKSUM_DOESNT_MATCH,
    TOO_LARGE_SIZE_COMPRESSED,
    UNKNOWN_COMPRESSION_METHOD,
    ClickHouseError,
)

_MASK64 = (1 << 64) - 1
_HEADER = struct.Struct("<BII")  # method, compressed size (incl. 9-byte header), raw size
METHOD_NONE = 0x02
METHOD_LZ4 = 0x82
METHOD_ZSTD = 0x90
# ClickHouse rejects blocks above 1 GiB (DBMS_MAX_COMPRESSED_SIZE).
MAX_BLOCK_BYTES = 0x40000000
_SLICE = 1 << 20


class Decoder(Protocol):
    def feed(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class IdentityDecoder:
    def feed(self, data: bytes) -> bytes:
        return data

    def finish(self) -> bytes:
        return b""


class FrameDecoder:
    """Concatenated frames/members of one codec; a new decompressor starts after each ends."""

    def __init__(self, name: str, factory: Callable[[], Any]) -> None:
        self._name = name
        self._factory = factory
        self._current: Any = None

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        try:
            # Bounded slices: at each frame end the codec copies the rest of its input into
            # unused_data, which would be quadratic over a large multi-frame chunk.
            with memoryview(data) as view:
                for start in range(0, len(view), _SLICE):
                    self._feed(view[start : start + _SLICE], out)
        except ClickHouseError:
            raise
        except Exception as exc:  # each codec raises its own type on corrupt input
            raise ClickHouseError(
                CANNOT_DECOMPRESS, f"Cannot decompress {self._name} request body: {exc}"
            ) from exc
        return b"".join(out)

    def _feed(self, data: bytes | memoryview, out: list[bytes]) -> None:
        while data:
            if self._current is None:
                self._current = self._factory()
            out.append(self._current.decompress(data))
            if not self._current.eof:
                return
            data = self._current.unused_data
            self._current = None

    def finish(self) -> bytes:
        if self._current is not None:
            raise ClickHouseError(
                CANNOT_DECOMPRESS, f"Unexpected end of {self._name} request body (truncated frame)"
            )
        return b""


def _zstd_obj() -> Any:
    return zstandard.ZstdDecompressor().decompressobj()


_DECODERS: dict[str, Callable[[], Any]] = {
    "lz4": lz4.frame.LZ4FrameDecompressor,
    "zstd": _zstd_obj,
    "gzip": lambda: zlib.decompressobj(16 + zlib.MAX_WBITS),
    "x-gzip": lambda: zlib.decompressobj(16 + zlib.MAX_WBITS),
    # HTTP "deflate" is zlib-wrapped; 32+ also accepts a gzip header some clients send.
    "deflate": lambda: zlib.decompressobj(32 + zlib.MAX_WBITS),
    "xz": lzma.LZMADecompressor,
    "lzma": lzma.LZMADecompressor,
    "bz2": bz2.BZ2Decompressor,
}


def content_decoder(encoding: str | None) -> Decoder:
    """Decoder for a request's ``Content-Encoding`` (ClickHouse names and aliases)."""
    name = (encoding or "").strip().lower()
    if name in ("", "identity", "none"):
        return IdentityDecoder()
    factory = _DECODERS.get(name)
    if factory is None:
        raise ClickHouseError(
            UNKNOWN_COMPRESSION_METHOD, f"Unknown HTTP Content-Encoding: {encoding!r}"
        )
    return FrameDecoder(name, factory)


def block_checksum(framed: bytes | memoryview) -> bytes:
    """CityHash128 (ClickHouse's v1.0.2) of header+payload, laid out as clickhouse stores it."""
    # bytes, not a memoryview: the binding never releases buffers it borrows from other types.
    value = CityHash128(bytes(framed))
    return struct.pack("<QQ", (value >> 64) & _MASK64, value & _MASK64)


class NativeBlockDecoder:
    """ClickHouse checksummed compressed blocks (``decompress=1``), fed in arbitrary pieces."""

    def __init__(self, *, verify_checksum: bool = True) -> None:
        self._buf = bytearray()
        self._verify = verify_checksum

    def feed(self, data: bytes) -> bytes:
        self._buf += data
        out: list[bytes] = []
        pos = 0
        buf = self._buf
        with memoryview(buf) as view:
            while len(buf) - pos >= 25:
                method, size, raw_size = _HEADER.unpack_from(buf, pos + 16)
                if size < 9 or size > MAX_BLOCK_BYTES or raw_size > MAX_BLOCK_BYTES:
                    raise ClickHouseError(
                        TOO_LARGE_SIZE_COMPRESSED,
                        f"Too large size_compressed_without_checksum: {size}, "
                        f"size_decompressed: {raw_size}. Most likely corrupted data",
                    )
                end = pos + 16 + size
                if end > len(buf):
                    break
                with view[pos + 16 : end] as framed, framed[9:] as payload:
                    expected = bytes(view[pos : pos + 16])
                    if self._verify and (actual := block_checksum(framed)) != expected:
                        raise ClickHouseError(
                            CHECKSUM_DOESNT_MATCH,
                            "Checksum doesn't match: corrupted data. "
                            f"Reference: {expected.hex()}. Actual: {actual.hex()}",
                        )
                    out.append(_decompress_block(method, payload, raw_size))
                pos = end
        del buf[:pos]
        return b"".join(out)

    def finish(self) -> bytes:
        if self._buf:
            raise ClickHouseError(
                CANNOT_DECOMPRESS,
                f"Unexpected end of compressed request body ({len(self._buf)} trailing bytes)",
            )
        return b""


def _decompress_block(method: int, payload: memoryview, raw_size: int) -> bytes:
    try:
        if method == METHOD_LZ4:
            data = lz4.block.decompress(payload, uncompressed_size=raw_size)
        elif method == METHOD_ZSTD:
            data = zstandard.ZstdDecompressor().decompress(payload, max_output_size=raw_size)
        elif method == METHOD_NONE:
            data = bytes(payload)
        else:
            raise ClickHouseError(
                UNKNOWN_COMPRESSION_METHOD, f"Unknown compression method: {method:#04x}"
            )
    except ClickHouseError:
        raise
    except Exception as exc:
        raise ClickHouseError(CANNOT_DECOMPRESS, f"Cannot decompress block: {exc}") from exc
    if len(data) != raw_size:
        raise ClickHouseError(
            CANNOT_DECOMPRESS, f"Decompressed {len(data)} bytes, block header says {raw_size}"
        )
    return data


class ChainDecoder:
    """HTTP content decoding first, then ClickHouse block decompression (server order)."""

    def __init__(self, first: Decoder, second: Decoder) -> None:
        self._first, self._second = first, second

    def feed(self, data: bytes) -> bytes:
        return self._second.feed(self._first.feed(data))

    def finish(self) -> bytes:
        tail = self._second.feed(self._first.finish())
        return tail + self._second.finish()


def request_decoder(content_encoding: str | None, *, native: bool, verify: bool = True) -> Decoder:
    decoder = content_decoder(content_encoding)
    if native:
        return ChainDecoder(decoder, NativeBlockDecoder(verify_checksum=verify))
    return decoder


def compress_native_blocks(data: bytes | memoryview, block_size: int = 1 << 20) -> bytes:
    """ClickHouse block framing for ``compress=1`` responses (lz4, 1 MiB blocks like the server)."""
    out = bytearray()
    view = memoryview(data)
    for start in range(0, len(view), block_size):
        raw = view[start : start + block_size]
        payload = lz4.block.compress(raw, store_size=False)
        framed = _HEADER.pack(METHOD_LZ4, len(payload) + 9, len(raw)) + payload
        out += block_checksum(framed)
        out += framed
    return bytes(out)


class Encoder(Protocol):
    name: str

    def compress(self, data: bytes | memoryview) -> bytes: ...

    def flush(self) -> bytes: ...


class Lz4Encoder:
    """One lz4 frame over the whole response (clickhouse-connect reads a single frame)."""

    name = "lz4"

    def __init__(self) -> None:
        self._comp = lz4.frame.LZ4FrameCompressor(block_size=lz4.frame.BLOCKSIZE_MAX4MB)
        self._started = False

    def compress(self, data: bytes | memoryview) -> bytes:
        head = b""
        if not self._started:
            head = self._comp.begin()
            self._started = True
        return head + self._comp.compress(data)

    def flush(self) -> bytes:
        head = b"" if self._started else self._comp.begin()
        self._started = True
        return head + self._comp.flush()


class ZstdEncoder:
    name = "zstd"

    def __init__(self, level: int = 1) -> None:
        self._obj = zstandard.ZstdCompressor(level=level).compressobj()

    def compress(self, data: bytes | memoryview) -> bytes:
        return self._obj.compress(data)

    def flush(self) -> bytes:
        return self._obj.flush()


class ZlibEncoder:
    def __init__(self, name: str, level: int, wbits: int) -> None:
        self.name = name
        self._obj = zlib.compressobj(level, zlib.DEFLATED, wbits)

    def compress(self, data: bytes | memoryview) -> bytes:
        return self._obj.compress(data)

    def flush(self) -> bytes:
        return self._obj.flush()


RESPONSE_ENCODINGS = ("lz4", "zstd", "gzip", "deflate")


def choose_response_encoding(accept_encoding: str | None) -> str | None:
    """First encoding the client lists (q>0) that we produce; clients list preference first."""
    for item in (accept_encoding or "").split(","):
        name, _, params = item.strip().partition(";")
        name = name.strip().lower()
        if params.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000"):
            continue
        if name == "x-gzip":
            name = "gzip"
        if name in RESPONSE_ENCODINGS:
            return name
    return None


def response_encoder(name: str, zlib_level: int = 3) -> Encoder:
    if name == "lz4":
        return Lz4Encoder()
    if name == "zstd":
        return ZstdEncoder()
    if name == "gzip":
        return ZlibEncoder("gzip", zlib_level, 16 + zlib.MAX_WBITS)
    if name == "deflate":
        return ZlibEncoder("deflate", zlib_level, zlib.MAX_WBITS)
    raise ClickHouseError(UNKNOWN_COMPRESSION_METHOD, f"Unknown response encoding {name!r}")
