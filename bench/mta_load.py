"""The SMTP load generator shared by both servers in ``bench.mta``.

Each of ``connections`` clients connects, upgrades with STARTTLS, authenticates with
AUTH PLAIN and submits its share of messages on that one session, timing every
transaction (MAIL FROM .. final 250) for p50/p99 acceptance latency.

The generator shares the 2 cores with the servers it measures, so it is kept cheap:
``generate`` runs it on uvloop (TLS in C) and each session is a bare client on asyncio
streams (``LeanSession``: aiosmtplib re-parsed every address and armed a timeout per
command, ~0.9 CPU-ms a message). Same commands on the wire, one at a time (no
pipelining), for both servers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import ssl
import statistics
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

_DOT_STUFF = re.compile(rb"^\.", re.MULTILINE)
_QUEUED_AS = re.compile(r"queued as (\S+)")


@dataclass
class LoadResult:
    sent: int = 0
    failed: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    message_ids: list[str] = field(default_factory=list)
    # The recipient of each accepted message (same order as message_ids).
    recipients: list[str] = field(default_factory=list)
    first_error: str = ""
    # Sessions that could not be opened or died mid-run (their messages are lost).
    session_errors: int = 0

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    def summary(self) -> dict[str, float | int]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "session_errors": self.session_errors,
            "msgs_per_s": round(self.rate, 1),
            "p50_ms": self.percentile(0.50),
            "p99_ms": self.percentile(0.99),
            "mean_ms": round(statistics.fmean(self.latencies_ms), 2) if self.latencies_ms else 0,
        }


def make_message(sender: str, rcpt: str, size: int = 2000) -> tuple[str, bytes]:
    domain = sender.rpartition("@")[2]
    message_id = f"{uuid.uuid4()}@{domain}"
    line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n"
    body = (line * (size // len(line) + 1))[:size].rstrip("\r\n")
    data = (
        f"From: {sender}\r\nTo: {rcpt}\r\nSubject: Your receipt\r\n"
        f"Message-ID: <{message_id}>\r\nDate: Sat, 28 Nov 2026 03:00:00 +0000\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()
    return message_id, data


class SmtpReplyError(Exception):
    def __init__(self, command: bytes, code: int, text: str) -> None:
        super().__init__(f"{command.split(b' ')[0].decode()} -> {code} {text}")
        self.code = code


class LeanSession:
    """A bare SMTP client session on asyncio streams: one write and one reply read per
    command, nothing else (no address parsing, no per-command timeout tasks)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(
        cls, port: int, username: str, password: str, tls: ssl.SSLContext
    ) -> LeanSession:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        session = cls(reader, writer)
        await session.reply(b"(greeting)", 220)
        await session.command(b"EHLO loadgen.kibamail.local", 250)
        await session.command(b"STARTTLS", 220)
        await writer.start_tls(tls)
        await session.command(b"EHLO loadgen.kibamail.local", 250)
        token = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
        await session.command(f"AUTH PLAIN {token}".encode(), 235)
        return session

    async def reply(self, command: bytes, expect: int) -> str:
        while True:
            line = await self.reader.readline()
            if not line:
                raise ConnectionError(f"connection closed after {command!r}")
            if line[3:4] != b"-":
                break
        code = int(line[:3])
        text = line[4:].decode(errors="replace").strip()
        if code != expect:
            raise SmtpReplyError(command, code, text)
        return text

    async def command(self, line: bytes, expect: int) -> str:
        self.writer.write(line + b"\r\n")
        return await self.reply(line, expect)

    async def send(self, sender: str, rcpt: str, data: bytes) -> str:
        """One transaction, one command at a time (no pipelining), as aiosmtplib does;
        returns the text of the final reply."""
        try:
            await self.command(b"MAIL FROM:<%s>" % sender.encode(), 250)
            await self.command(b"RCPT TO:<%s>" % rcpt.encode(), 250)
            await self.command(b"DATA", 354)
            self.writer.write(_DOT_STUFF.sub(b"..", data) + b".\r\n")
            return await self.reply(b"(end of data)", 250)
        except SmtpReplyError:
            await self.command(b"RSET", 250)
            raise

    async def close(self) -> None:
        with contextlib.suppress(ConnectionError, SmtpReplyError):
            await self.command(b"QUIT", 221)
        self.writer.close()


async def run_load(
    port: int,
    username: str,
    password: str,
    *,
    messages: int,
    connections: int,
    sender: str = "receipts@sender.example",
    rcpt_domains: int = 20,
) -> LoadResult:
    result = LoadResult()
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    counter = iter(range(messages))

    async def client() -> None:
        try:
            await session_loop()
        except (OSError, ConnectionError, SmtpReplyError, asyncio.IncompleteReadError) as exc:
            result.session_errors += 1
            result.first_error = result.first_error or f"session: {exc}"

    async def session_loop() -> None:
        session = await LeanSession.open(port, username, password, tls)
        try:
            for i in counter:
                rcpt = f"user{i}@example{i % rcpt_domains}.org"
                message_id, data = make_message(sender, rcpt)
                started = time.perf_counter()
                try:
                    answer = await session.send(sender, rcpt, data)
                except SmtpReplyError as exc:
                    result.failed += 1
                    result.first_error = result.first_error or str(exc)
                    continue
                result.latencies_ms.append((time.perf_counter() - started) * 1000)
                # Kibamail names its own message id ("queued as <id>"); events carry it.
                queued = _QUEUED_AS.search(answer)
                result.message_ids.append(queued.group(1) if queued else message_id)
                result.recipients.append(rcpt)
                result.sent += 1
        finally:
            await session.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    result.seconds = time.perf_counter() - started
    return result


def generate(port: int, username: str, password: str, **kwargs: Any) -> LoadResult:
    """``run_load`` on its own uvloop event loop (blocking)."""
    import uvloop

    return uvloop.run(run_load(port, username, password, **kwargs))
