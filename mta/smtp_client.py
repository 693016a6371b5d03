"""Outbound SMTP with aiosmtplib: pooled connections per (source IP, MX), shaping limits.

Traffic shaping per provider group (KumoMTA's shaping.toml model): at most
``max_connections`` open connections, ``max_messages_per_connection`` before a
reconnect, and an optional ``messages_per_minute`` pace. TLS is opportunistic: STARTTLS
whenever the server offers it (certificates are not verified, as for MTA-to-MTA mail
without MTA-STS/DANE), unless ``require_tls`` refuses plain-text delivery.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiosmtplib

from .config import ShapingConfig


@dataclass
class RcptResult:
    code: int
    text: str


@dataclass
class TransactionResult:
    """Per-recipient answers; ``code``/``text`` of a failure that hit all recipients."""

    rcpts: dict[str, RcptResult] = field(default_factory=dict)
    transcript: list[str] = field(default_factory=list)
    tls: bool = False


@dataclass
class DataHooks:
    """Crash-safety seams around the end of DATA (RFC 1047's duplicate window).

    ``before_dot`` prepares the "dot sent" record for the accepted recipients and
    returns the call that writes it; that call runs synchronously right after the message
    and its final ``.`` were handed to the kernel (only when nothing stayed in the
    transport's user-space buffer, so the bytes reach the remote even if the process dies
    now), with no other work between the two writes. ``answered`` is awaited as soon as
    DATA's reply arrives, before any connection bookkeeping.
    """

    before_dot: Callable[[list[str]], Callable[[], None]]
    answered: Callable[[list[str], int, str], Awaitable[None]]


class TransientConnectError(Exception):
    """Could not connect / greet / TLS: a temporary failure for every recipient."""


def _insecure_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


_TLS = _insecure_tls()


@dataclass
class _Conn:
    smtp: aiosmtplib.SMTP
    sent: int = 0
    tls: bool = False
    # The transport that owns the socket (under TLS, the one beneath the TLS layer).
    socket_transport: asyncio.BaseTransport | None = None


# Seconds between checks that a large message's final dot left user space (see _data).
FLUSH_POLL = 0.001


class _Pace:
    """Spaces sends so a group stays under messages_per_minute."""

    def __init__(self, per_minute: float) -> None:
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self.next_at = 0.0
        self.lock = asyncio.Lock()

    def set_rate(self, per_minute: float) -> None:
        self.interval = 60.0 / per_minute if per_minute else 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self.lock:
            now = time.monotonic()
            if self.next_at > now:
                await asyncio.sleep(self.next_at - now)
            self.next_at = max(now, self.next_at) + self.interval


async def smtp_path_command(
    smtp: aiosmtplib.SMTP,
    verb: bytes,
    prefix: bytes,
    address: str,
    utf8: bool,
    options: list[bytes] | None = None,
) -> aiosmtplib.SMTPResponse:
    """MAIL/RCPT for an address validated at intake: no re-parsing (aiosmtplib's
    mail()/rcpt() run email.utils.parseaddr each time) and UTF-8 when SMTPUTF8 is used."""
    path = b"%s<%s>" % (prefix, address.encode("utf-8" if utf8 else "ascii"))
    reply = await smtp.execute_command(verb, path, *(options or []))
    if reply.code not in (250, 251):
        raise aiosmtplib.SMTPResponseException(reply.code, reply.message)
    return reply


class ConnectionPool:
    def __init__(
        self,
        local_hostname: str,
        port: int,
        *,
        connect_timeout: float = 30.0,
        command_timeout: float = 120.0,
        require_tls: bool = False,
    ) -> None:
        self.local_hostname = local_hostname
        self.port = port
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.require_tls = require_tls
        self._idle: dict[tuple[str, str], list[_Conn]] = {}
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._paces: dict[str, _Pace] = {}
        # (group, source IP) paces for pairs slowed by reputation throttling.
        self._ip_paces: dict[tuple[str, str], _Pace] = {}

    def _limit(self, group: str, shaping: ShapingConfig) -> asyncio.Semaphore:
        if group not in self._limits:
            self._limits[group] = asyncio.Semaphore(shaping.max_connections)
            self._paces[group] = _Pace(shaping.messages_per_minute)
        return self._limits[group]

    async def _connect(self, source_ip: str, address: str, transcript: list[str]) -> _Conn:
        smtp = aiosmtplib.SMTP(
            hostname=address,
            port=self.port,
            local_hostname=self.local_hostname,
            source_address=(source_ip, 0) if source_ip else None,
            timeout=self.command_timeout,
            start_tls=False,
        )
        try:
            greeting = await smtp.connect(timeout=self.connect_timeout)
            socket_transport = smtp.transport
            transcript.append(f"< {greeting.code} {greeting.message}")
            await smtp.ehlo()
            tls = False
            if smtp.supports_extension("starttls"):
                reply = await smtp.starttls(tls_context=_TLS)
                transcript.append(f"< {reply.code} {reply.message} (STARTTLS)")
                await smtp.ehlo()  # RFC 3207: forget what was learnt before TLS, ask again
                tls = True
            elif self.require_tls:
                smtp.close()
                raise TransientConnectError(f"{address} does not offer STARTTLS (TLS required)")
            return _Conn(smtp, tls=tls, socket_transport=socket_transport)
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            smtp.close()
            raise TransientConnectError(f"connect to {address}:{self.port} failed: {exc}") from exc

    async def send(
        self,
        *,
        group: str,
        shaping: ShapingConfig,
        source_ip: str,
        address: str,
        mail_from: str,
        rcpts: list[str],
        data: bytes,
        hooks: DataHooks | None = None,
        pace_per_minute: float = 0.0,
    ) -> TransactionResult:
        """One transaction to ``address``; see DataHooks for the crash-safety seams.

        ``pace_per_minute`` (> 0) additionally paces this source IP for the group."""
        key = (source_ip, address)
        result = TransactionResult()
        transcript = result.transcript
        if pace_per_minute > 0:
            ip_pace = self._ip_paces.setdefault((group, source_ip), _Pace(pace_per_minute))
            ip_pace.set_rate(pace_per_minute)
            await ip_pace.wait()
        async with self._limit(group, shaping):
            await self._paces[group].wait()
            idle = self._idle.setdefault(key, [])
            conn = idle.pop() if idle else None
            if conn is not None and not conn.smtp.is_connected:
                conn = None
            if conn is None:
                conn = await self._connect(source_ip, address, transcript)
            result.tls = conn.tls
            reusable = False
            try:
                reusable = await self._transaction(conn, mail_from, rcpts, data, result, hooks)
            except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
                transcript.append(f"! {type(exc).__name__}: {exc}")
                for rcpt in rcpts:
                    result.rcpts.setdefault(rcpt, RcptResult(0, f"connection lost: {exc}"))
            conn.sent += 1
            if reusable and conn.sent < shaping.max_messages_per_connection:
                idle.append(conn)
            else:
                try:
                    await asyncio.wait_for(conn.smtp.quit(), 5)
                except Exception:
                    conn.smtp.close()
        return result

    async def _transaction(
        self,
        conn: _Conn,
        mail_from: str,
        rcpts: list[str],
        data: bytes,
        result: TransactionResult,
        hooks: DataHooks | None = None,
    ) -> bool:
        smtp, transcript = conn.smtp, result.transcript
        options = [b"BODY=8BITMIME"] if smtp.supports_extension("8bitmime") else []
        utf8 = not (mail_from + "".join(rcpts)).isascii()
        if utf8:
            options.append(b"SMTPUTF8")
        transcript.append(f"> MAIL FROM:<{mail_from}>")
        try:
            reply = await smtp_path_command(smtp, b"MAIL", b"FROM:", mail_from, utf8, options)
        except aiosmtplib.SMTPResponseException as exc:
            transcript.append(f"< {exc.code} {exc.message}")
            for rcpt in rcpts:
                result.rcpts[rcpt] = RcptResult(exc.code, exc.message)
            await self._reset(smtp)
            return exc.code < 500 and exc.code != 421
        transcript.append(f"< {reply.code} {reply.message}")
        accepted: list[str] = []
        for rcpt in rcpts:
            transcript.append(f"> RCPT TO:<{rcpt}>")
            try:
                reply = await smtp_path_command(smtp, b"RCPT", b"TO:", rcpt, utf8)
                transcript.append(f"< {reply.code} {reply.message}")
                accepted.append(rcpt)
            except aiosmtplib.SMTPResponseException as exc:
                transcript.append(f"< {exc.code} {exc.message}")
                result.rcpts[rcpt] = RcptResult(exc.code, exc.message)
        if not accepted:
            await self._reset(smtp)
            return True
        transcript.append(f"> DATA ({len(data)} bytes)")
        for rcpt in accepted:
            # Until the final answer arrives, a lost connection means "unknown, retry".
            result.rcpts[rcpt] = RcptResult(0, "no answer to DATA")
        try:
            reply = await self._data(conn, data, accepted, hooks)
        except aiosmtplib.SMTPResponseException as exc:
            if hooks is not None:
                await hooks.answered(accepted, exc.code, exc.message)
            transcript.append(f"< {exc.code} {exc.message}")
            for rcpt in accepted:
                result.rcpts[rcpt] = RcptResult(exc.code, exc.message)
            if exc.code == 421:
                return False
            await self._reset(smtp)
            return True
        if hooks is not None:
            await hooks.answered(accepted, reply.code, reply.message)
        transcript.append(f"< {reply.code} {reply.message}")
        for rcpt in accepted:
            result.rcpts[rcpt] = RcptResult(reply.code, reply.message)
        return True

    @staticmethod
    async def _data(
        conn: _Conn, data: bytes, accepted: list[str], hooks: DataHooks | None
    ) -> aiosmtplib.SMTPResponse:
        """smtp.data(), with the hooks' marker written synchronously right after the
        message bytes (ending in the final dot) reached the kernel.

        A large message can stay partly in user space after the write: in the transport,
        or under TLS in the socket transport beneath it (which the TLS transport's own
        buffer size leaves out). Then the marker waits until both are empty, checked every
        ``FLUSH_POLL`` seconds, and is dropped if DATA's answer comes first (``answered``
        records the outcome then)."""
        smtp = conn.smtp
        protocol = smtp.protocol
        if hooks is None or protocol is None:
            return await smtp.data(data)
        loop = asyncio.get_running_loop()
        waiting: list[asyncio.TimerHandle] = []

        def unsent() -> int:
            layers: set[Any] = {protocol.transport, conn.socket_transport} - {None}
            try:
                return sum(t.get_write_buffer_size() for t in layers)
            except Exception:  # a transport torn down meanwhile: nothing is known to be out
                return -1

        def mark_when_flushed(mark: Callable[[], None]) -> None:
            waiting.clear()
            left = unsent()
            if left == 0:
                mark()
            elif left > 0 and not (protocol.transport is None or protocol.transport.is_closing()):
                waiting.append(loop.call_later(FLUSH_POLL, mark_when_flushed, mark))

        def write_with_marker(payload: bytes) -> None:
            if payload == b"DATA\r\n":
                type(protocol).write(protocol, payload)
                return
            mark = hooks.before_dot(accepted)
            type(protocol).write(protocol, payload)
            mark_when_flushed(mark)

        protocol.write = write_with_marker  # type: ignore[method-assign,assignment]
        try:
            return await smtp.data(data)
        finally:
            del protocol.write
            for handle in waiting:
                handle.cancel()

    @staticmethod
    async def _reset(smtp: aiosmtplib.SMTP) -> None:
        try:
            await smtp.rset()
        except aiosmtplib.SMTPException:
            smtp.close()

    async def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.smtp.close()
        self._idle.clear()
