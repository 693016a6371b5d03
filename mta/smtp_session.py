"""aiosmtpd's SMTP protocol, made to keep the promises the MTA advertises.

- PROXY protocol only from trusted load balancers, per listener
  (``[submission.trusted_proxies]``): a listener with trusted proxies refuses every other
  peer (554) and every trusted connection that does not start with a PROXY v1/v2 header
  (421); a listener without them refuses a PROXY header (554). So the client IP used for
  limits, lockouts and logs is the TCP peer or what a trusted proxy says, never the
  client's choice. Implicit TLS (465) behind a proxy: the header comes in clear, then TLS.
- Per-IP connection limits (on that client IP) and AUTH after implicit TLS (port 465).
- ENHANCEDSTATUSCODES (RFC 2034): aiosmtpd's own replies ("250 OK", "503 Error: need
  MAIL command", "500 Error: bad syntax", ...) get an RFC 3463 code, as Postfix sends
  them. Exempt, as RFC 2034 says: the greeting and the 250 answers to HELO/EHLO (whose
  lines are extension keywords); 3xx replies are intermediate and have no class.
- An *idle* timeout during DATA: aiosmtpd arms its timer per command, so a large upload
  that keeps flowing would be cut at ``timeout``; here the timer only fires after
  ``timeout`` seconds without a byte, and time spent in our own handlers (policies,
  queueing, the AUTH failure delay) never counts. A client that stalls (in DATA or
  between commands) gets ``421 4.4.2`` before the connection is closed.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from asyncio import sslproto
from typing import Any, AnyStr, cast

from aiosmtpd.proxy_protocol import V2_SIGNATURE, get_proxy
from aiosmtpd.smtp import SMTP, Session, TLSSetupException

from . import metrics
from .config import ProxyNetwork, is_trusted

log = logging.getLogger(__name__)

PROXY_HEADER_SECONDS = 10.0  # a trusted load balancer sends its header at once
TLS_HANDSHAKE_SECONDS = 30.0
_PROXY_STARTS = (b"PROXY ", V2_SIGNATURE[:6])

_REPLY = re.compile(r"^([245])(\d\d)([ -])(.*)$", re.DOTALL)
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
# <dot-atom@hostname>: what nearly every client sends; anything else takes aiosmtpd's path.
_SIMPLE_PATH = re.compile(rf"<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>")
_HAS_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}(?:\s|$)")

# Basic code -> enhanced code (RFC 3463) for aiosmtpd's built-in replies.
_BY_CODE = {
    "221": "2.0.0",
    "250": "2.0.0",
    "252": "2.0.0",
    "421": "4.3.0",
    "451": "4.3.0",
    "454": "4.7.0",
    "500": "5.5.2",
    "501": "5.5.4",
    "502": "5.5.1",
    "503": "5.5.1",
    "504": "5.5.4",
    "530": "5.7.0",
    "552": "5.3.4",
    "553": "5.1.3",
    "554": "5.7.0",
    "555": "5.5.4",
}
# Where the text says more than the code (checked first, lower-case substrings).
_BY_TEXT = [
    ("not recognized", "5.5.1"),
    ("strict ascii", "5.6.7"),
    ("timeout", "4.4.2"),
    ("error: (", "5.3.0"),
]


def with_enhanced_code(reply: str) -> str:
    """``reply`` with an RFC 3463 code after the basic code, unless it has one already."""
    match = _REPLY.match(reply)
    if match is None:
        return reply
    klass, rest, sep, text = match.groups()
    if _HAS_ENHANCED.match(text):
        return reply
    code = klass + rest
    lowered = text.lower()
    enhanced = next((e for needle, e in _BY_TEXT if needle in lowered and e[0] == klass), None)
    enhanced = enhanced or _BY_CODE.get(code) or f"{klass}.0.0"
    return f"{code}{sep}{enhanced} {text}".rstrip()


def simple_path(arg: str) -> tuple[str, str] | None:
    """(address, parameters) of a plain ``<dot-atom@hostname> [params]`` path, exactly as
    aiosmtpd's ``_getaddr`` returns them; None for anything else (quoted local parts,
    address literals, comments, the null path), which then takes aiosmtpd's path.

    aiosmtpd parses every MAIL/RCPT address with ``email``'s header parser and builds a
    Protocol class per call: ~10 % of the listener's CPU and a third of the sink's."""
    match = _SIMPLE_PATH.match(arg)
    if match is None:
        return None
    rest = arg[match.end() :]
    if rest:
        if rest[0] not in " \t":
            return None
        rest = rest.lstrip(" \t")
        if rest.startswith("("):
            return None
    return match.group(1), rest


class FastAddressSMTP(SMTP):
    """aiosmtpd's SMTP with the ``simple_path`` fast path for MAIL/RCPT addresses."""

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        found = simple_path(arg)
        if found is None:
            return super()._getaddr(arg)
        if self.local_part_limit and len(found[0].rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return found


class ConnectionLimiter:
    """Open connections per client IP (the real one when behind PROXY protocol)."""

    def __init__(self, per_ip: int) -> None:
        self.per_ip = per_ip
        self.open: dict[str, int] = {}

    def acquire(self, ip: str) -> bool:
        if self.open.get(ip, 0) >= self.per_ip:
            return False
        self.open[ip] = self.open.get(ip, 0) + 1
        return True

    def release(self, ip: str) -> None:
        left = self.open.get(ip, 0) - 1
        if left > 0:
            self.open[ip] = left
        else:
            self.open.pop(ip, None)


class KibaSMTP(FastAddressSMTP):
    """aiosmtpd's SMTP with the additions described in the module docstring."""

    def __init__(
        self,
        handler: Any,
        *,
        limiter: ConnectionLimiter,
        implicit_tls: bool,
        trusted_proxies: tuple[ProxyNetwork, ...] = (),
        implicit_tls_context: ssl.SSLContext | None = None,
        listener: str = "submission",
        **kwargs: Any,
    ) -> None:
        """``implicit_tls_context``: the TLS to start after the PROXY header (465 behind a
        load balancer; the listener itself is then plain TCP)."""
        super().__init__(handler, **kwargs)
        self.limiter = limiter
        self.implicit_tls = implicit_tls
        self.trusted_proxies = trusted_proxies
        self.implicit_tls_context = implicit_tls_context
        self.proxied = False  # this connection comes from a trusted proxy
        self._first_data = True
        self.counted_ip: str | None = None
        self.refused = False
        self.listener = listener
        self._in_data = False
        self._last_data_at = 0.0
        self._busy = 0  # handler hooks running: the client is waiting for us, not idle
        self._handler_done_at = 0.0
        self._answering_hello = False
        self._lost = False

    @staticmethod
    def _refuse(transport: asyncio.BaseTransport, reason: str, reply: bytes) -> None:
        metrics.SUBMISSION_REJECTED.labels(reason).inc()
        cast(asyncio.WriteTransport, transport).write(reply)
        transport.close()

    def _admit(self, ip: str, transport: asyncio.BaseTransport) -> bool:
        """Count the connection against the client IP's limit; False: refused (421)."""
        if not self.limiter.acquire(ip):
            self._refuse(transport, "ip_connection_limit",
                         b"421 4.7.0 Too many connections from your IP, try later\r\n")  # fmt: skip
            return False
        self.counted_ip = ip
        return True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._original_transport is None:
            peer = str((transport.get_extra_info("peername") or ("?",))[0])
            if self.trusted_proxies:
                if not is_trusted(peer, self.trusted_proxies):
                    log.warning("%s listener: refused %s, not a trusted proxy", self.listener, peer)
                    self.refused = True
                    self._refuse(transport, "untrusted_proxy",
                                 b"554 5.7.1 This listener takes connections only from its "
                                 b"load balancer\r\n")  # fmt: skip
                    return
                self.proxied = True  # admitted once the header names the client
            elif not self._admit(peer, transport):
                self.refused = True
                return
            metrics.CONNECTIONS.labels(self.listener).inc()
        super().connection_made(transport)
        if self.implicit_tls and self.implicit_tls_context is None and self._tls_protocol is None:
            # Implicit TLS: the transport is already encrypted, so AUTH is allowed.
            self._tls_protocol = transport  # type: ignore[assignment]

    async def _handle_client(self) -> None:
        if self.proxied:
            if not await self._read_proxy_header():
                return
            if self.implicit_tls_context is not None and not await self._start_implicit_tls():
                return
        await super()._handle_client()

    async def _read_proxy_header(self) -> bool:
        """The trusted proxy's PROXY v1/v2 header, then the per-IP admission on the client
        it names. A header naming no client (v2 LOCAL, v1 UNKNOWN: the proxy's own health
        check) is the proxy speaking for itself: served, not counted as a client."""
        assert self.session is not None and self.transport is not None
        self._reset_timeout(PROXY_HEADER_SECONDS)
        try:
            proxy = await get_proxy(self._reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            proxy = None
        if not proxy:
            if not self.transport.is_closing():
                self._refuse(self.transport, "proxy_header_missing",
                             b"421 4.7.0 PROXY protocol header required\r\n")  # fmt: skip
            return False
        self.session.proxy_data = proxy
        named = getattr(proxy, "src_addr", None) is not None
        if named and not self._admit(client_ip(self.session), self.transport):
            return False
        self._reset_timeout()
        return True

    async def _start_implicit_tls(self) -> bool:
        """TLS right after the PROXY header. ``loop.start_tls`` cannot take the client's
        first TLS bytes, which often arrive in the same segment as the header and already
        sit in the stream buffer, so the TLS protocol is wired here and fed them."""
        raw = cast(asyncio.Transport, self.transport)
        context = cast(ssl.SSLContext, self.implicit_tls_context)
        pending = bytes(self._reader._buffer)  # type: ignore[attr-defined]
        self._reader._buffer.clear()  # type: ignore[attr-defined]
        waiter: asyncio.Future[None] = self.loop.create_future()
        tls = sslproto.SSLProtocol(
            self.loop, self, context, waiter, server_side=True, call_connection_made=False
        )
        raw.set_protocol(tls)
        tls.connection_made(raw)
        while pending:
            buffer = tls.get_buffer(len(pending))
            size = min(len(buffer), len(pending))
            buffer[:size] = pending[:size]
            tls.buffer_updated(size)
            pending = pending[size:]
        failure: BaseException | None = None
        try:
            await asyncio.wait_for(waiter, TLS_HANDSHAKE_SECONDS)
        except (Exception, asyncio.CancelledError) as error:
            failure = error
        app = tls._app_transport
        if failure is not None or app is None or raw.is_closing():
            # A connection lost mid-handshake never reaches our connection_lost through
            # the TLS protocol: release the connection's count and gauge here.
            log.info("%s listener: TLS handshake failed: %r", self.listener, failure)
            raw.close()
            self.connection_lost(failure if isinstance(failure, Exception) else None)
            return False
        self._original_transport = raw
        assert self.session is not None
        self._adopt_tls(app)
        return True

    def connection_lost(self, error: Exception | None) -> None:
        if self.refused or self._lost:
            return  # (a failed TLS handshake reports the loss twice)
        self._lost = True
        metrics.CONNECTIONS.labels(self.listener).dec()
        if self.counted_ip is not None:
            self.limiter.release(self.counted_ip)
            self.counted_ip = None
        super().connection_lost(error)

    # --- STARTTLS on the event loop's own TLS ------------------------------------------

    def _adopt_tls(self, tls: asyncio.Transport) -> None:
        """What aiosmtpd does once a handshake is done: the session's TLS facts, and the
        stream reader/writer and ``self.transport`` moved onto the TLS transport."""
        assert self.session is not None
        self._tls_protocol = tls  # type: ignore[assignment]  # truthy: TLS is on
        self.session.ssl = {
            name: tls.get_extra_info(name)
            for name in ("sslcontext", "peercert", "cipher", "compression", "ssl_object")
        }
        self._reader._transport = tls  # type: ignore[attr-defined]
        self._writer._transport = tls  # type: ignore[attr-defined]
        self.transport = tls
        self._reset_timeout()

    async def smtp_STARTTLS(self, arg: str) -> None:
        """STARTTLS through ``loop.start_tls`` (uvloop: TLS in C) instead of aiosmtpd's
        hand-wired pure-Python ``asyncio.sslproto``, a fifth of the listener's CPU per
        message; then what aiosmtpd's ``connection_made`` does after its handshake."""
        transport = cast("asyncio.Transport | None", self.transport)
        if arg or not self.tls_context or self._tls_protocol or transport is None:
            await super().smtp_STARTTLS(arg)  # its own error replies
            return
        await self.push("220 Ready to start TLS")
        # RFC 3207: discard anything the client pipelined before the handshake.
        self._reader._buffer.clear()  # type: ignore[attr-defined]
        try:
            tls = await self.loop.start_tls(transport, self, self.tls_context, server_side=True)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            raise TLSSetupException() from error
        if tls is None:
            raise TLSSetupException()
        proxy_data = self.session.proxy_data if self.session is not None else None
        self._original_transport = transport
        self._set_rset_state()
        self.session = self._create_session()  # RFC 3207 4.2: forget the pre-TLS state
        self.session.peer = tls.get_extra_info("peername")
        self.session.proxy_data = proxy_data  # from the load balancer, not the client
        self._adopt_tls(tls)
        hook = self._handle_hooks.get("STARTTLS")
        self._tls_handshake_okay = hook is None or hook(self, self.session, self.envelope)

    # --- enhanced status codes -------------------------------------------------------

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str) and not (self._answering_hello and status[:1] == "2"):
            status = with_enhanced_code(status)
        await super().push(status)

    async def smtp_HELO(self, hostname: str) -> None:
        self._answering_hello = True
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._answering_hello = False

    async def smtp_EHLO(self, hostname: str) -> None:
        self._answering_hello = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._answering_hello = False

    # --- idle timeout ----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._last_data_at = self.loop.time()
        if self._first_data:
            self._first_data = False
            if not self.proxied and data.startswith(_PROXY_STARTS) and self.transport:
                log.warning("%s listener: PROXY header from an untrusted peer", self.listener)
                metrics.SUBMISSION_REJECTED.labels("untrusted_proxy").inc()
                cast(asyncio.WriteTransport, self.transport).write(
                    b"554 5.7.1 PROXY protocol is not accepted from your address\r\n"
                )
                self.transport.close()
                return
        super().data_received(data)

    async def smtp_DATA(self, arg: str) -> None:
        self._in_data = True
        self._last_data_at = self.loop.time()
        try:
            await super().smtp_DATA(arg)
        finally:
            self._in_data = False

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        self._busy += 1
        try:
            return await super()._call_handler_hook(command, *args)
        finally:
            self._busy -= 1
            self._handler_done_at = self.loop.time()

    def _timeout_cb(self) -> None:
        if self._busy:  # our own work (policies, queueing, AUTH delay) is not client idling
            self._reset_timeout()
            return
        last = max(self._handler_done_at, self._last_data_at if self._in_data else 0.0)
        idle = self.loop.time() - last
        if idle < self._timeout_duration:
            # Activity since the timer was armed: wait out the rest of the window.
            self._reset_timeout(self._timeout_duration - idle)
            return
        metrics.SUBMISSION_REJECTED.labels("idle_timeout").inc()
        if self.transport is not None and not self.transport.is_closing():
            cast(asyncio.WriteTransport, self.transport).write(
                b"421 4.4.2 Idle timeout exceeded, closing connection\r\n"
            )
        super()._timeout_cb()


def client_ip(session: Session) -> str:
    proxy = session.proxy_data
    if proxy is not None and getattr(proxy, "src_addr", None):
        src = proxy.src_addr
        return str(src[0] if isinstance(src, tuple) else src)
    return str((session.peer or ("?",))[0])


def advertise_extensions(session: Session, hostname: str, responses: list[str]) -> list[str]:
    """aiosmtpd pipelines commands already; say so, and announce enhanced status codes."""
    session.host_name = hostname
    return [*responses[:-1], "250-PIPELINING", "250-ENHANCEDSTATUSCODES", responses[-1]]
