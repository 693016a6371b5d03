"""CSV records with RFC 4180 quoted fields spanning lines: streamed, row numbers right
(the HTTP import of such files is in test_contacts.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from api.services.contacts_import import MAX_RECORD_CHARS, UnterminatedRecord, csv_records

MULTILINE_CSV = (
    b"email,first_name,notes\r\n"  # line 1
    b'a@x.com,Ann,"likes\r\nnewlines, commas\r\nand ""quotes"""\r\n'  # lines 2-4
    b"\r\n"  # line 5 (blank)
    b'not-an-email,Bob,"two\nlines"\n'  # lines 6-7
    b'b@x.com,"Bo\nb",plain\n'  # lines 8-9
    b"c@x.com,Cy,too,many\n"  # line 10
    b'd@x.com,"D ""the"" dog",x\n'  # line 11
)

pytestmark = pytest.mark.unit


def chunks_of(data: bytes, size: int) -> Iterator[bytes]:
    """Chunks that cut through quotes, CRLFs and UTF-8 sequences."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def _aiter(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _collect(data: bytes, size: int) -> list[tuple[int, list[str]]]:
    async def run() -> list[tuple[int, list[str]]]:
        return [record async for record in csv_records(_aiter(chunks_of(data, size)))]

    return asyncio.run(run())


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 64, 10_000])
def test_records_span_lines_and_keep_their_first_line_number(chunk_size: int) -> None:
    records = _collect(MULTILINE_CSV, chunk_size)
    assert [line for line, _ in records] == [1, 2, 6, 8, 10, 11]
    assert records[1][1] == ["a@x.com", "Ann", 'likes\r\nnewlines, commas\r\nand "quotes"']
    assert records[2][1] == ["not-an-email", "Bob", "two\nlines"]
    assert records[3][1] == ["b@x.com", "Bo\nb", "plain"]
    assert records[5][1] == ["d@x.com", 'D "the" dog', "x"]


def test_a_quote_inside_an_unquoted_field_is_a_literal_quote() -> None:
    records = _collect(b'email,first_name\n5"9@x.com,Tall"ish\ne@x.com,E\n', 5)
    assert records == [
        (1, ["email", "first_name"]),
        (2, ['5"9@x.com', 'Tall"ish']),
        (3, ["e@x.com", "E"]),
    ]


def test_an_unclosed_quote_stops_at_a_bounded_size_with_its_line() -> None:
    data = b"email\nok@x.com\n" + b'"never closed\n' + b"x" * 100 + b"\n" * 5
    with pytest.raises(UnterminatedRecord) as at_end:
        _collect(data, 16)
    assert at_end.value.line == 3
    huge = b'email\n"open\n' + (b"y" * 1000 + b"\n") * (MAX_RECORD_CHARS // 1000 + 2)
    with pytest.raises(UnterminatedRecord) as too_big:
        _collect(huge, 4096)
    assert too_big.value.line == 2
