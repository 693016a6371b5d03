"""chDB-backed ClickHouse HTTP gateway: the one process that owns the local warehouse data dir.

Start it with ``kibamail warehouse serve`` (or ``python -m local_stack.clickhouse_gateway``); every
other process talks to it with ordinary ClickHouse clients over HTTP on 127.0.0.1.
"""

from __future__ import annotations

from .server import GatewayConfig, serve

__all__ = ["GatewayConfig", "serve"]
