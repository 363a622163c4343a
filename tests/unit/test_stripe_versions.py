"""Stripe prices name their catalog version (issue 16, point 4): a subscription read back from
Stripe is on the version its prices belong to, and prices shared by versions leave it open."""

from __future__ import annotations

from pathlib import Path

from service.adapters.catalog_loader import load_catalogs
from service.adapters.stripe_api import RemoteItem, catalog_lines, plan_from_items
from service.domain.accounts import Plan
from service.domain.catalog import Interval

HISTORY = load_catalogs(Path(__file__).resolve().parents[2] / "pricing_catalog")
CATALOG = HISTORY.latest
LINES = catalog_lines(CATALOG)
OLD, NEW = HISTORY.names


def items(*keys_and_quantities: tuple[str, int]) -> tuple[RemoteItem, ...]:
    return tuple(
        RemoteItem(f"si_{n}", f"price_{key}", quantity, LINES[key])
        for n, (key, quantity) in enumerate(keys_and_quantities)
    )


def test_every_version_s_lookup_keys_map_to_their_lines_and_versions() -> None:
    assert LINES["relay_growth_base_month"].versions == (OLD,)
    assert LINES["relay_growth_base_month_2026_12"].versions == (NEW,)
    assert LINES["relay_growth_seat_month"].versions == (OLD, NEW)
    assert LINES["relay_growth_base_month_2026_12"].key == "base"


def test_a_subscription_on_a_version_s_own_price_is_on_that_version() -> None:
    old = plan_from_items(
        CATALOG, items(("relay_growth_base_month", 1), ("relay_growth_seat_month", 2))
    )
    new = plan_from_items(
        CATALOG, items(("relay_growth_base_month_2026_12", 1), ("relay_growth_seat_month", 2))
    )
    assert old == Plan("growth", Interval.month, 7, {}, OLD)
    assert new == Plan("growth", Interval.month, 7, {}, NEW)


def test_prices_every_version_shares_leave_the_version_open() -> None:
    plan = plan_from_items(CATALOG, items(("relay_business_base_month", 1)))
    assert plan == Plan("business", Interval.month, 10, {}, "")
    assert plan is not None
    assert plan.matches(Plan("business", Interval.month, 10, {}, OLD))
    assert not plan.matches(Plan("business", Interval.month, 11, {}, OLD))
