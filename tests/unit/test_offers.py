"""Offer candidates and ranking from account state and signals, with no database."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from service.adapters.catalog_loader import load_catalog
from service.domain.accounts import Plan
from service.domain.catalog import Catalog, Interval
from service.domain.offers import OfferEngine, candidates, rank

CATALOG_PATH = Path(__file__).resolve().parents[2] / "pricing_catalog" / "catalog.yaml"


@dataclass(frozen=True)
class Use:
    used: int
    limit: int | bool | None


@dataclass(frozen=True)
class Cross:
    id: str
    feature: str
    level: str


@dataclass(frozen=True)
class Signals:
    crossings: tuple[Cross, ...] = ()
    score: int = 0
    in_window: bool = False
    motion: str = "self_serve"


@dataclass(frozen=True)
class Case:
    plan: Plan
    usage: dict[str, Use] = field(default_factory=dict)
    signals: Signals = Signals()


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(CATALOG_PATH)


def growth(seats: int = 10, **addons: int) -> Plan:
    return Plan("growth", Interval.month, seats, addons)


def offers_for(catalog: Catalog, case: Case):
    return candidates(catalog, case.plan, case.usage, case.signals)


def test_quiet_account_gets_nothing(catalog: Catalog) -> None:
    case = Case(growth(), {"seats": Use(3, 10), "api_calls": Use(10_000, 100_000)})
    assert offers_for(catalog, case) == []


def test_high_seat_utilization_offers_seats_and_a_bigger_tier(catalog: Catalog) -> None:
    case = Case(growth(10), {"seats": Use(9, 10)}, Signals((Cross("sig1", "seats", "warn"),)))
    found = {o.engine: o for o in offers_for(catalog, case)}
    # 9 active seats at 75% utilization need 12 seats.
    assert found[OfferEngine.seat].target == growth(12)
    assert found[OfferEngine.seat].reasons == ("seats_at_90_percent",)
    assert found[OfferEngine.seat].signal_ids == ("sig1",)
    assert found[OfferEngine.upsell].target_tier == "business"
    # Offered for seat pressure, the bigger tier is sized like the seat offer (issue 15, 7).
    # A step up is priced at the version in force (here the only one).
    assert found[OfferEngine.upsell].target == Plan(
        "business", Interval.month, 12, {}, catalog.version
    )


def test_a_tier_upsell_for_seats_at_the_limit_does_not_leave_the_customer_at_100_percent(
    catalog: Catalog,
) -> None:
    """Starter/10 with 10 active seats: Growth with 10 seats would still be full."""
    starter = Plan("starter", Interval.month, 10, {})
    case = Case(starter, {"seats": Use(10, 10)}, Signals((Cross("sig1", "seats", "limit"),)))
    upsells = [o for o in offers_for(catalog, case) if o.engine is OfferEngine.upsell]
    [growth_offer] = [o for o in upsells if o.target_tier == "growth"]
    assert growth_offer.target is not None
    assert growth_offer.target.seats == 14  # ceil(10 / 75 %)
    assert 10 * 100 // growth_offer.target.seats <= 75


def test_a_seat_sized_upsell_stays_within_the_new_tiers_range(catalog: Catalog) -> None:
    case = Case(growth(50), {"seats": Use(50, 50)}, Signals((Cross("sig1", "seats", "limit"),)))
    upsell = next(o for o in offers_for(catalog, case) if o.engine is OfferEngine.upsell)
    assert upsell.target is not None and upsell.target_tier == "business"
    assert upsell.target.seats == 67  # ceil(50 / 75 %), within Business's 10-200
    full = Case(
        Plan("business", Interval.month, 200, {}),
        {"seats": Use(200, 200)},
        Signals((Cross("sig1", "seats", "limit"),)),
    )
    assert all(
        o.target is None or o.target.seats <= catalog.tiers[o.target_tier].seats.max
        for o in offers_for(catalog, full)
    )


def test_seat_offer_never_exceeds_the_tier_maximum(catalog: Catalog) -> None:
    case = Case(growth(49), {"seats": Use(49, 49)})
    seat = next(o for o in offers_for(catalog, case) if o.engine is OfferEngine.seat)
    assert seat.target is not None and seat.target.seats == 50


def test_metered_limit_near_offers_a_usage_pack_and_an_upsell(catalog: Catalog) -> None:
    hit = Signals((Cross("s2", "api_calls", "limit"),))
    case = Case(growth(api_pack=1), {"api_calls": Use(200_000, 200_000)}, hit)
    found = {o.engine: o for o in offers_for(catalog, case)}
    assert found[OfferEngine.addon].target == growth(api_pack=2)
    assert found[OfferEngine.addon].strength == 100  # the limit was hit
    assert found[OfferEngine.upsell].target_tier == "business"
    assert found[OfferEngine.upsell].target is not None
    assert found[OfferEngine.upsell].target.addons == {"api_pack": 1}


def test_top_tier_routes_to_sales(catalog: Catalog) -> None:
    plan = Plan("business", Interval.month, 10, {})
    case = Case(plan, {"api_calls": Use(990_000, 1_000_000)})
    found = {o.engine: o for o in offers_for(catalog, case)}
    assert found[OfferEngine.sales_assisted].target is None
    assert found[OfferEngine.sales_assisted].target_tier == "enterprise"
    assert "no_self_serve_step_up" in found[OfferEngine.sales_assisted].reasons
    assert found[OfferEngine.addon].target == Plan("business", Interval.month, 10, {"api_pack": 1})


def test_high_contract_value_adds_a_sales_offer(catalog: Catalog) -> None:
    case = Case(growth(), {}, Signals(motion="sales_assisted"))
    (offer,) = offers_for(catalog, case)
    assert offer.engine is OfferEngine.sales_assisted
    assert offer.reasons == ("high_contract_value",)


def test_ready_account_sees_the_first_tier_that_unlocks_a_feature(catalog: Catalog) -> None:
    starter = Plan("starter", Interval.month, 3, {})
    assert offers_for(catalog, Case(starter)) == []
    (offer,) = offers_for(catalog, Case(starter, {}, Signals(in_window=True)))
    assert offer.target_tier == "business"  # growth unlocks no boolean feature
    assert offer.reasons == ("business_unlocks_sso", "business_unlocks_audit_log")


def test_ranking_prefers_strong_signals_then_the_smaller_step(catalog: Catalog) -> None:
    hit = Signals((Cross("s", "api_calls", "limit"),), in_window=True)
    case = Case(growth(seats=10), {"api_calls": Use(100_000, 100_000), "seats": Use(9, 10)}, hit)
    found = offers_for(catalog, case)
    steps = {OfferEngine.addon: 4_900, OfferEngine.upsell: 20_000, OfferEngine.seat: 3_000}
    ranked = rank([(o, steps[o.engine]) for o in found], in_window=True)
    assert [o.engine for o, _ in ranked] == [
        OfferEngine.addon,
        OfferEngine.upsell,
        OfferEngine.seat,
    ]
    assert ranked[0][0].score(True) == 115  # limit hit, inside the activation window


def test_offer_inputs_hold_until_a_usage_period_ends_or_another_day_since_activation() -> None:
    from datetime import UTC, datetime, timedelta

    from service.domain.offers import inputs_change_at
    from service.domain.periods import Period

    now = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
    month = Period(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    billing = Period(datetime(2026, 11, 5, tzinfo=UTC), datetime(2026, 12, 5, tzinfo=UTC))
    assert inputs_change_at([None, billing, month], None, now) == month.end
    assert inputs_change_at([], None, now) == datetime.max.replace(tzinfo=UTC)
    # Activated 3 days and 2 hours ago: day 3 ends in 22 hours.
    activated = now - timedelta(days=3, hours=2)
    assert inputs_change_at([month], activated, now) == activated + timedelta(days=4)
    # A milestone stamped in the future (a client clock ahead): day 0 until a day after it.
    ahead = now + timedelta(hours=1)
    assert inputs_change_at([month], ahead, now) == ahead + timedelta(days=1)
