"""Local billing renews on its own: the service's worker and `upshift billing run` renew every
account whose period has ended, with no request for it, once, with the movement at the boundary."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from service.adapters.billing_tables import InvoiceRow
from service.adapters.db import make_session_factory
from service.api.app import create_app
from service.cli import main
from service.services.billing import local_gateways
from service.services.renewals import renew_due_accounts, renewal_lag_seconds
from service.settings import Settings
from tests.api.test_upgrades import ACME, ledger_rows, upgrade
from tests.conftest import CATALOG_PATH
from tests.fakes.clock import FakeClock
from tests.usage_fixtures import wait_for

BOUNDARY = datetime(2026, 12, 10, 12, 0, tzinfo=UTC)  # ACME's first period ends here


def invoices(db: Engine, account_id: str) -> int:
    """The account's renewal invoices (its first period's, from the PUT, is not one)."""
    with Session(db) as session:
        return session.scalar(
            select(func.count())
            .select_from(InvoiceRow)
            .where(
                InvoiceRow.account_id == account_id,
                InvoiceRow.billing_reason == "subscription_cycle",
            )
        )


def test_the_worker_applies_a_scheduled_downgrade_at_the_boundary_without_any_request(
    db: Engine, settings: Settings, clock: FakeClock, admin_headers: dict[str, str]
) -> None:
    quick = settings.model_copy(update={"renewal_poll_s": 0.05})
    with TestClient(create_app(quick, clock=clock, engine=db)) as http:
        assert http.put("/v1/accounts/acme", json=ACME, headers=admin_headers).is_success
        scheduled = upgrade(http, admin_headers, {"target": {"seats": 6}})
        assert scheduled.json()["status"] == "scheduled", scheduled.text
        clock.set(BOUNDARY + timedelta(seconds=20))  # then nobody asks for the account
        wait_for(lambda: len(ledger_rows(db)) == 2, "the contraction is booked")
        # The round reports to /metrics once its transaction has committed.
        wait_for(
            lambda: "upshift_renewals_total 1.0" in http.get("/metrics").text,
            "the round is counted",
        )
        lag = http.get("/metrics").text
    [new, contraction] = ledger_rows(db)
    assert (contraction.kind, contraction.mrr_delta_minor) == ("contraction", -1_500)
    assert contraction.occurred_at == BOUNDARY  # the boundary, not when it was noticed
    # recorded by the worker's round, on the service's clock: within a minute of the boundary
    assert timedelta(0) <= contraction.recorded_at - BOUNDARY <= timedelta(minutes=1)
    assert new.kind == "new"
    assert invoices(db, "acme") == 1  # one renewal invoice
    assert "upshift_renewals_total 1.0" in lag
    assert "upshift_renewal_lag_seconds 0.0" in lag


def test_workers_running_at_once_renew_each_account_once(
    db: Engine, settings: Settings, clock: FakeClock, admin_headers: dict[str, str]
) -> None:
    with TestClient(create_app(settings, clock=clock, engine=db)) as http:
        for i in range(30):
            assert http.put(f"/v1/accounts/a{i:02d}", json=ACME, headers=admin_headers).is_success
    now = BOUNDARY + timedelta(minutes=1)
    factory = make_session_factory(db)
    gateways = local_gateways(set())
    assert renewal_lag_seconds(factory, now) == 60.0
    catalog = create_app(settings, clock=clock, engine=db).state.catalog

    def worker(_: int) -> int:
        return renew_due_accounts(factory, catalog, gateways, now, batch_size=4).renewals

    with ThreadPoolExecutor(3) as pool:
        renewed = sum(pool.map(worker, range(3)))
    assert renewed == 30
    assert [invoices(db, f"a{i:02d}") for i in range(30)] == [1] * 30
    assert renewal_lag_seconds(factory, now) == 0.0
    assert renew_due_accounts(factory, catalog, gateways, now).renewals == 0


def test_billing_run_renews_once_and_again_renews_nothing(
    db: Engine,
    database_url: str,
    settings: Settings,
    clock: FakeClock,
    admin_headers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with TestClient(create_app(settings, clock=clock, engine=db)) as http:
        http.put("/v1/accounts/acme", json=ACME, headers=admin_headers)
        upgrade(http, admin_headers, {"target": {"tier": "starter", "seats": 5}})  # scheduled
    monkeypatch.setenv("UPSHIFT_DATABASE_URL", database_url)
    monkeypatch.setenv("UPSHIFT_CATALOG_PATH", str(CATALOG_PATH))
    monkeypatch.setenv("UPSHIFT_NOW", (BOUNDARY + timedelta(days=1)).isoformat())
    runner = CliRunner()
    first = runner.invoke(main, ["billing", "run", "--once"])
    assert first.exit_code == 0, first.output
    assert "renewed 1 accounts (1 periods invoiced); 0 failed" in first.stdout
    assert "due accounts" in first.stderr  # the progress bar
    again = runner.invoke(main, ["billing", "run", "--once"])
    assert "renewed 0 accounts (0 periods invoiced)" in again.stdout
    kinds = [(row.kind, row.occurred_at) for row in ledger_rows(db)]
    assert kinds[-1] == ("contraction", BOUNDARY)
    monkeypatch.setenv("UPSHIFT_BILLING_BACKEND", "stripe")
    refused = runner.invoke(main, ["billing", "run", "--once"])
    assert refused.exit_code == 2 and "Stripe renews" in refused.output
