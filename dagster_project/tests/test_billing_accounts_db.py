"""Billing fails loudly when the accounts database is unreachable (never a partial close)."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pytest

from dagster_project.defs.billing import BILLING_RETRY, BillingCloseConfig, billing_invoices
from dagster_project.resources import WarehouseResource
from kibamail.settings import get_settings
from local_stack.stack import free_port


class UntouchedWarehouse(WarehouseResource):
    """Fails the test if the close reaches the warehouse at all."""

    def client(self) -> Any:
        raise AssertionError("the month was closed without the accounts database")


@pytest.mark.unit
def test_unreachable_accounts_database_fails_the_close_and_writes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed_port = free_port()  # nothing listens there
    monkeypatch.setenv(
        "KIBAMAIL_DATABASE__URL", f"mysql+pymysql://billing:x@127.0.0.1:{closed_port}/kibamail"
    )
    get_settings.cache_clear()
    try:
        with pytest.raises(dg.Failure, match="accounts database unreachable, month 2026-10"):
            billing_invoices(
                context=dg.build_asset_context(),
                config=BillingCloseConfig(month="2026-10"),
                warehouse=UntouchedWarehouse(),
            )
    finally:
        get_settings.cache_clear()


@pytest.mark.unit
def test_the_close_is_retried_by_dagster() -> None:
    assert BILLING_RETRY.max_retries >= 3
    assert billing_invoices.op.retry_policy == BILLING_RETRY
