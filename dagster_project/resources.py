"""Resources that read their configuration at run time (env -> Settings), not at import."""

from __future__ import annotations

from typing import Any

import dagster as dg

from kibamail.settings import Settings, get_settings


class WarehouseResource(dg.ConfigurableResource):
    """ClickHouse over HTTP (the chDB gateway locally, a cluster in production)."""

    def settings(self) -> Settings:
        return get_settings()

    def client(self) -> Any:
        from kibamail.clients import clickhouse_client

        return clickhouse_client(self.settings())

    @property
    def database(self) -> str:
        return self.settings().clickhouse.database


class SendingResource(dg.ConfigurableResource):
    """Our own sending path (the MTA's durable queue) and the API's team directory."""

    def settings(self) -> Settings:
        return get_settings()

    def redis(self) -> Any:
        from kibamail.clients import redis_client

        return redis_client(self.settings())
