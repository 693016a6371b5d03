"""``kibamail warehouse serve``: ClickHouse's HTTP interface in front of the one chDB engine.

uvicorn (httptools + uvloop, TCP_NODELAY) parses HTTP; a minimal ASGI app streams request
bodies in ~1 MiB pieces to a worker thread that decompresses them and feeds chDB, while the
next piece is being received. Engine calls run on a thread pool (chDB releases the GIL), so
readers and writers proceed concurrently; each request owns a chDB handle for its duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from kibamail.settings import Settings

from .compression import choose_response_encoding
from .engine import DEFAULT_DATABASE, Engine, Handle, Session, SessionManager, parse_session_timeout
from .errors import QUERY_IS_TOO_LARGE, UNKNOWN_EXCEPTION, ClickHouseError
from .execution import Execution, Outcome, RequestContext
from .protocol import (
    authenticate,
    credentials,
    int_setting,
    parse_form,
    parse_query_string,
    split_params,
    truthy,
)
from .pump import BodyTooLarge, ClientGone, pump
from .responses import Receive, Send, send_error, send_outcome, send_plain

log = logging.getLogger("kibamail.warehouse")

Scope = dict[str, Any]

FEED_BYTES = 1 << 20  # wire bytes handed to a worker at once
DRAIN_BYTES = 256 << 20  # after an error, read (and drop) this much body so the client sees it


@dataclass
class GatewayConfig:
    host: str
    port: int
    data_dir: Path
    database: str
    username: str = "default"
    password: str = ""
    max_body_bytes: int = 4 << 30
    max_query_bytes: int = 256 << 20
    workers: int = 32
    keep_alive_seconds: int = 30
    display_name: str = socket.gethostname()
    # An empty password (the token clients send) leaves auth off: development only.
    environment: str = "development"

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> GatewayConfig:
        ch = settings.clickhouse
        values: dict[str, Any] = {
            "host": ch.host,
            "port": ch.port,
            "data_dir": Path(ch.data_dir),
            "database": ch.database,
            "username": ch.username,
            "password": ch.password,
            "environment": settings.environment,
        }
        # Optional knobs the settings model may grow; explicit overrides win.
        for name in ("max_body_bytes", "max_query_bytes", "workers"):
            if getattr(ch, name, None) is not None:
                values[name] = getattr(ch, name)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


class _Body:
    """ASGI receive() that remembers whether the request body has been read to its end."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.complete = False

    async def __call__(self) -> dict[str, Any]:
        message = await self._receive()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            self.complete = True
        return message


class Gateway:
    """The ASGI application."""

    def __init__(self, config: GatewayConfig, engine: Engine) -> None:
        self.config = config
        self.engine = engine
        self.sessions = SessionManager(engine)
        self.pool = ThreadPoolExecutor(config.workers, thread_name_prefix="chdb")

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run on a worker; if we are cancelled, still wait: the handle must not be reused
        while a thread is inside chDB with it."""
        future = asyncio.wrap_future(self.pool.submit(fn, *args))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            await asyncio.wait({future})
            raise

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path in ("/ping", "/replicas_status") or (
            path == "/" and method in ("GET", "HEAD") and not scope["query_string"]
        ):
            await send_plain(send, 200, b"Ok.\n", head=method == "HEAD")
            return
        if path != "/":
            text = (
                f"There is no handle {path}\n\nUse / or /ping for health checks.\n"
                "Send queries from your program with POST method or GET /?query=...\n"
            )
            await send_plain(send, 404, text.encode())
            return
        await self._query(scope, receive, send)

    # -- one query ---------------------------------------------------------------------

    async def _query(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        params = parse_query_string(scope["query_string"])
        query_id = params.get("query_id") or str(uuid.uuid4())
        base = [
            (b"x-clickhouse-server-display-name", self.config.display_name.encode()),
            (b"x-clickhouse-query-id", query_id.encode("utf-8", "replace")),
            (b"x-clickhouse-timezone", self.engine.timezone.encode()),
        ]
        receive = body = _Body(receive)
        handle: Handle | None = None
        session: Session | None = None
        execution: Execution | None = None
        try:
            if scope["method"] not in ("GET", "POST", "HEAD"):
                raise ClickHouseError(
                    UNKNOWN_EXCEPTION,
                    f"HTTP method {scope['method']} is not supported; use GET or POST",
                )
            user, password = credentials(headers, params)
            authenticate(user, password, self.config.username, self.config.password)
            declared = headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > self.config.max_body_bytes:
                raise self._too_large(int(declared))
            ctype = headers.get("content-type", "")
            if ctype.lower().startswith("multipart/form-data"):
                form = await self._read_all(receive, self.config.max_query_bytes)
                params.update(parse_form(ctype, form))
            ctx = self._context(scope["method"], headers, params)
            session_id = params.get("session_id")
            if session_id:
                timeout = parse_session_timeout(params.get("session_timeout"))
                session = self.sessions.acquire(
                    session_id, timeout, check=truthy(params.get("session_check"))
                )
                handle, database = session.handle, params.get("database") or None
                ctx.in_session = True
            else:
                handle = self.engine.acquire()
                database = params.get("database") or DEFAULT_DATABASE
            execution = Execution(handle, ctx, database=database)
            if not body.complete:
                await self._pump(receive, execution)
            outcome: Outcome = await self.run(execution.finish)
            await send_outcome(
                send,
                outcome,
                base,
                encoding=self._response_encoding(params, headers),
                native=truthy(params.get("compress")),
                level=int_setting(params, "http_zlib_compression_level", 3),
                head=scope["method"] == "HEAD",
                keep_alive=self.config.keep_alive_seconds,
                run=self.run,
            )
        except ClientGone:
            if execution is not None:
                await self.run(execution.abort)
        except ClickHouseError as exc:
            if execution is not None:
                await self.run(execution.abort)
            await self._fail(send, body, exc, base)
        except Exception as exc:
            log.exception("query %s failed unexpectedly", query_id)
            if execution is not None:
                await self.run(execution.abort)
            await self._fail(send, body, ClickHouseError(UNKNOWN_EXCEPTION, repr(exc)), base)
        finally:
            discard = execution.discard_handle if execution is not None else False
            if session is not None:
                if discard:
                    session.handle.close()
                    session.handle = await self.run(self.engine.new_handle)
                self.sessions.release(session, close=truthy(params.get("close_session")))
            elif handle is not None:
                self.engine.release(handle, discard=discard)

    def _context(
        self, method: str, headers: dict[str, str], params: dict[str, str]
    ) -> RequestContext:
        binds, settings = split_params(params)
        query = params.get("query", "")
        return RequestContext(
            method=method,
            query_param=query.encode(),
            params=binds,
            settings=settings,
            default_format=params.get("default_format") or "TabSeparated",
            readonly=int_setting(params, "readonly", 0),
            content_encoding=headers.get("content-encoding"),
            native_decompress=truthy(params.get("decompress")),
            verify_checksum=not truthy(
                params.get("http_native_compression_disable_checksumming_on_decompress")
            ),
            max_query_size=int_setting(params, "max_query_size", 262_144),
            max_buffer_bytes=self.config.max_query_bytes,
        )

    def _too_large(self, size: int) -> ClickHouseError:
        return ClickHouseError(
            QUERY_IS_TOO_LARGE,
            f"Request body of {size} bytes exceeds the gateway limit of "
            f"{self.config.max_body_bytes} bytes",
        )

    async def _pump(self, receive: Receive, execution: Execution) -> None:
        try:
            await pump(
                receive,
                lambda data: self.run(execution.feed, data),
                max_body=self.config.max_body_bytes,
                feed_bytes=FEED_BYTES,
            )
        except BodyTooLarge as exc:
            raise self._too_large(exc.size) from None

    async def _read_all(self, receive: Receive, limit: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            body = message.get("body", b"")
            total += len(body)
            if total > limit:
                raise self._too_large(total)
            parts.append(body)
            if not message.get("more_body", False):
                return b"".join(parts)

    async def _drain(self, body: _Body) -> bool:
        """Read and drop the rest of the body (so the client gets to read our error); False if
        it is too big to be worth it and the connection should be closed instead."""
        drained = 0
        while not body.complete:
            message = await body()
            if message["type"] == "http.disconnect":
                return False
            drained += len(message.get("body", b""))
            if drained > DRAIN_BYTES:
                return False
        return True

    @staticmethod
    def _response_encoding(params: dict[str, str], headers: dict[str, str]) -> str | None:
        if not truthy(params.get("enable_http_compression")):
            return None
        return choose_response_encoding(headers.get("accept-encoding"))

    async def _fail(
        self, send: Send, body: _Body, exc: ClickHouseError, base: list[tuple[bytes, bytes]]
    ) -> None:
        keep = body.complete or await self._drain(body)
        await send_error(send, exc, base, version=self.engine.version, close=not keep)

    async def expire_sessions(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.sessions.expire()


class _Server(uvicorn.Server):
    """uvicorn without its own signal capture: serve() installs loop handlers instead."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _main(config: GatewayConfig) -> None:
    try:
        engine = await asyncio.get_running_loop().run_in_executor(
            None, Engine, config.data_dir, config.database
        )
    except ClickHouseError as exc:
        raise SystemExit(
            f"cannot open the chDB data dir {config.data_dir}: {exc.text}\n"
            "(only one process may own it: is another `kibamail warehouse serve` running?)"
        ) from None
    gateway = Gateway(config, engine)
    server = _Server(
        uvicorn.Config(
            gateway,
            host=config.host,
            port=config.port,
            loop="none",
            http="httptools",
            lifespan="off",
            access_log=False,
            log_level="warning",
            server_header=False,
            timeout_keep_alive=config.keep_alive_seconds,
            timeout_graceful_shutdown=10,
            backlog=2048,
        )
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.handle_exit, sig, None)
    reaper = asyncio.create_task(gateway.expire_sessions())
    announcer = asyncio.create_task(_announce(server, engine, config))
    try:
        await server.serve()
    finally:
        reaper.cancel()
        announcer.cancel()
        gateway.sessions.close()
        gateway.pool.shutdown(wait=True)
        engine.close()
        log.warning("warehouse stopped, chDB closed")
    if not server.started:
        raise SystemExit(f"could not serve on {config.host}:{config.port}")


async def _announce(server: uvicorn.Server, engine: Engine, config: GatewayConfig) -> None:
    """Log readiness once the socket is really listening (health checks race this line)."""
    while not server.started:
        await asyncio.sleep(0.05)
    log.warning(
        "chDB %s at %s (database %s), ClickHouse HTTP on http://%s:%d",
        engine.version,
        engine.path,
        config.database,
        config.host,
        config.port,
    )


def serve(settings: Settings, **overrides: Any) -> None:
    """Own settings.clickhouse.data_dir and serve ClickHouse HTTP until SIGTERM/SIGINT."""
    # Same answers on every machine: server timezone UTC unless TZ says otherwise (chDB reads
    # TZ once, when it is first imported).
    if "chdb" not in sys.modules:
        os.environ.setdefault("TZ", "UTC")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = GatewayConfig.from_settings(settings, **overrides)
    if not config.password and config.environment != "development":
        raise SystemExit(
            f"refusing to serve the warehouse without a token in environment "
            f"{config.environment!r}: set KIBAMAIL_CLICKHOUSE__PASSWORD (clients send it as "
            "the ClickHouse password; auth may be off only in development)"
        )
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_main(config))
