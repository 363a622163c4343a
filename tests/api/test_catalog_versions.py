"""Grandfathering (issue 16, point 1): a later catalog version raises a price; accounts that
bought before keep their MRR, quotes and ledger at their own version, new business pays the
new price, and a tier change buys today's price list."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine

from service.api.app import create_app
from service.services.renewals import renew_due_accounts
from service.settings import Settings
from tests.api.test_upgrades import ledger_rows, report_active_seats, upgrade
from tests.conftest import REPO_ROOT
from tests.fakes.clock import FakeClock

OLD, NEW = "2026-11-01.1", "2026-12-01.1"  # the bundled versions; NEW: Growth monthly 99 -> 119
GROWTH_5 = {"tier": "growth", "interval": "month", "seats": 5}


@pytest.fixture
def versioned(database_url: str, db: Engine, clock: FakeClock) -> Iterator[TestClient]:
    """The app on the bundled catalog directory (both versions), at 20 November (OLD in force)."""
    clock.set(datetime(2026, 11, 20, 12, tzinfo=UTC))
    settings = Settings(
        database_url=database_url,
        catalog_path=REPO_ROOT / "pricing_catalog",
        token_secret=SecretStr("test-token-secret"),
    )
    app: FastAPI = create_app(settings, clock=clock, engine=db)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def put(client: TestClient, headers: dict[str, str], account: str, **body: Any) -> Any:
    response = client.put(f"/v1/accounts/{account}", json={**GROWTH_5, **body}, headers=headers)
    assert response.status_code in (200, 201), response.text
    return response.json()


def quote(client: TestClient, headers: dict[str, str], account: str, target: dict) -> Any:
    response = client.post(
        f"/v1/accounts/{account}/quotes", json={"target": target}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_existing_accounts_keep_their_price_and_new_ones_get_the_new_one(
    versioned: TestClient, admin_headers: dict[str, str], clock: FakeClock, db: Engine
) -> None:
    old = put(versioned, admin_headers, "old")
    assert (old["catalog_version"], old["limits_version"]) == (OLD, OLD)
    assert old["mrr"]["amount_minor"] == 9_900

    clock.set(datetime(2026, 12, 2, 12, tzinfo=UTC))  # NEW is in force
    new = put(versioned, admin_headers, "new")
    assert new["catalog_version"] == NEW
    assert new["mrr"]["amount_minor"] == 11_900
    # The catalog shown for new business is the version in force.
    assert versioned.get("/v1/catalog").json()["version"] == NEW

    # The old account's MRR did not move: no restart, no silent re-pricing.
    again = versioned.get("/v1/accounts/old", headers=admin_headers).json()
    assert (again["catalog_version"], again["mrr"]["amount_minor"]) == (OLD, 9_900)

    # More seats are bought at the account's own version (seat prices did not change; the
    # base stays 99.00): the new MRR is the old base plus the seat.
    seats = quote(versioned, admin_headers, "old", {"seats": 6})
    assert seats["catalog_version"] == OLD
    assert seats["new_mrr"]["amount_minor"] == 9_900 + 1_500
    same = quote(versioned, admin_headers, "new", {"seats": 6})
    assert same["new_mrr"]["amount_minor"] == 11_900 + 1_500

    # A tier change buys today's price list.
    business = quote(versioned, admin_headers, "old", {"tier": "business"})
    assert business["catalog_version"] == NEW

    # The seat upgrade books exactly the seat as seat expansion, never the price change.
    done = upgrade(versioned, admin_headers, {"target": {"seats": 6}}, key="k-old", acc="old")
    assert done.status_code == 200, done.text
    moved = ledger_rows(db, "old")[-1]
    assert (moved.kind, moved.engine, moved.mrr_delta_minor) == ("expansion", "seat", 1_500)
    assert moved.catalog_version == OLD
    after = versioned.get("/v1/accounts/old", headers=admin_headers).json()
    assert (after["catalog_version"], after["mrr"]["amount_minor"]) == (OLD, 11_400)
    assert sum(row.mrr_delta_minor for row in ledger_rows(db, "old")) == 11_400


def test_a_tier_change_moves_the_account_to_the_version_in_force(
    versioned: TestClient, admin_headers: dict[str, str], clock: FakeClock, db: Engine
) -> None:
    put(versioned, admin_headers, "old", tier="starter", seats=3)
    clock.set(datetime(2026, 12, 2, 12, tzinfo=UTC))
    done = upgrade(versioned, admin_headers, {"target": {"tier": "growth"}}, key="k", acc="old")
    assert done.status_code == 200, done.text
    account = versioned.get("/v1/accounts/old", headers=admin_headers).json()
    assert (account["catalog_version"], account["limits_version"]) == (NEW, NEW)
    assert account["mrr"]["amount_minor"] == 11_900
    entry = ledger_rows(db, "old")[-1]
    assert (entry.engine, entry.mrr_delta_minor, entry.catalog_version) == (
        "upsell",
        11_900 - 2_900,
        NEW,
    )


def test_renewals_keep_the_grandfathered_price(
    versioned: TestClient, admin_headers: dict[str, str], clock: FakeClock, db: Engine
) -> None:
    put(versioned, admin_headers, "old")
    clock.set(datetime(2027, 1, 25, tzinfo=UTC))  # two renewals later, NEW long in force
    state = versioned.app.state  # type: ignore[attr-defined]
    done = renew_due_accounts(
        state.session_factory, state.catalog, state.billing_gateways, clock.now()
    )
    assert done.renewals == 2
    account = versioned.get("/v1/accounts/old", headers=admin_headers).json()
    assert account["current_period_start"].startswith("2027-01-20")
    assert (account["catalog_version"], account["mrr"]["amount_minor"]) == (OLD, 9_900)
    assert [row.kind for row in ledger_rows(db, "old")] == ["new"]


def test_an_account_can_be_stated_at_a_named_version_and_an_unknown_one_is_refused(
    versioned: TestClient, admin_headers: dict[str, str], clock: FakeClock
) -> None:
    clock.set(datetime(2026, 12, 2, 12, tzinfo=UTC))
    imported = put(versioned, admin_headers, "imported", catalog_version=OLD)
    assert (imported["catalog_version"], imported["mrr"]["amount_minor"]) == (OLD, 9_900)
    bad = versioned.put(
        "/v1/accounts/bad", json={**GROWTH_5, "catalog_version": "1999"}, headers=admin_headers
    )
    assert bad.status_code == 422
    problem = bad.json()
    assert problem["code"] == "unknown_catalog_version"
    assert "catalog_version" in str(problem)


def test_a_grandfathered_account_accepts_its_seat_offer_at_its_own_price(
    versioned: TestClient, admin_headers: dict[str, str], clock: FakeClock, db: Engine
) -> None:
    put(versioned, admin_headers, "acme")
    clock.set(datetime(2026, 12, 2, 12, tzinfo=UTC))
    report_active_seats(versioned, admin_headers, 5)
    offers = versioned.get("/v1/accounts/acme/upgrade-offers", headers=admin_headers).json()
    by_engine = {offer["engine"]: offer for offer in offers["offers"]}
    seat, upsell = by_engine["seat"], by_engine["upsell"]
    # The seat offer keeps the account's version; the step up is priced at the one in force.
    assert seat["quote"]["catalog_version"] == OLD
    assert upsell["quote"]["catalog_version"] == NEW
    added = seat["target"]["seats"] - 5
    assert seat["quote"]["new_mrr"]["amount_minor"] == 9_900 + 1_500 * added
    done = upgrade(versioned, admin_headers, {"offer_token": seat["offer_token"]}, key="k")
    assert done.status_code == 200, done.text
    entry = ledger_rows(db, "acme")[-1]
    assert (entry.engine, entry.mrr_delta_minor, entry.offer_id) == (
        "seat",
        1_500 * added,
        seat["id"],
    )


def test_offers_cached_before_a_version_takes_effect_are_not_served_after(
    versioned: TestClient, admin_headers: dict[str, str], clock: FakeClock
) -> None:
    put(versioned, admin_headers, "acme", tier="starter", seats=3)

    def growth_offer() -> Any:
        page = versioned.get("/v1/accounts/acme/upgrade-offers", headers=admin_headers).json()
        return next(o for o in page["offers"] if o["target"]["tier"] == "growth")

    clock.set(datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC))
    report_active_seats(versioned, admin_headers, 3)  # all seats used: step ups are offered
    before = growth_offer()
    assert (before["quote"]["catalog_version"], before["quote"]["new_mrr"]["amount_minor"]) == (
        OLD,
        9_900,
    )
    clock.set(datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC))  # two seconds later: NEW in force
    after = growth_offer()
    assert (after["quote"]["catalog_version"], after["quote"]["new_mrr"]["amount_minor"]) == (
        NEW,
        11_900,
    )
