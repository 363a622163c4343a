"""The page-load rendering of offers (api.offer_page over services.offers.show_offers) gives the
bytes, tokens and impressions of the general path (price_offers, then offers_payload), for any
account state and moment: several offers, add-ons, sales-assisted ones, none, second changes in
a period, interval changes, and text that JSON or %-formatting would mangle."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from service.adapters.catalog_loader import load_catalog
from service.api.offer_page import offers_page, render
from service.api.offer_schemas import dump_json, offers_payload
from service.domain.accounts import AccountStatus, Plan
from service.domain.catalog import Catalog, Interval
from service.domain.errors import DomainError
from service.domain.offers import OfferCandidate, OfferEngine
from service.domain.periods import Period, add_months
from service.domain.quotes import current_billed
from service.domain.thresholds import Crossing, SignalSummary
from service.domain.usage import FeatureUsage
from service.services.account_state import AccountState
from service.services.offers import (
    OfferInputs,
    OfferPlan,
    impression_rows,
    plan_offers,
    planned_offer,
    price_offers,
    show_offers,
    shown_impressions,
)
from service.services.quotes import prepare_for_account
from service.services.tokens import TokenSigner

BUNDLED = load_catalog(Path(__file__).resolve().parents[2] / "pricing_catalog" / "catalog.yaml")
SIGNER = TokenSigner("page-test-secret")
SECOND = timedelta(seconds=1)


def awkward(catalog: Catalog) -> Catalog:
    """The catalog with names no template may mangle: quotes, backslashes, %, non-ASCII."""
    return catalog.model_copy(
        update={
            "version": "2026-11 «été» 100%",
            "tiers": {
                key: tier.model_copy(update={"name": f'Tier "{key}" ✨ 50% \\ off'})
                for key, tier in catalog.tiers.items()
            },
            "addons": {
                key: addon.model_copy(update={"name": f"Pack {key} — %s %d 𝄞"})
                for key, addon in catalog.addons.items()
            },
        }
    )


CATALOGS = [BUNDLED, awkward(BUNDLED)]
SELF_SERVE = sorted(key for key, tier in BUNDLED.tiers.items() if tier.self_serve)


def assert_same_page(catalog: Catalog, plan: OfferPlan, now: datetime) -> None:
    try:
        general = price_offers(plan, now)
    except ValueError as refused:  # a line billed after `now`: the general path fails, so must this
        event("refused")
        with pytest.raises(type(refused)):
            show_offers(plan, now)
        return
    shown = show_offers(plan, now)
    event(f"{len(general.offers)} offers")
    assert render(offers_page(plan), shown) == dump_json(offers_payload(general))
    assert shown_impressions(plan, shown, now) == impression_rows(plan, general, now)


@st.composite
def inputs(draw: st.DrawFn, catalog: Catalog) -> OfferInputs:
    tier_key = draw(st.sampled_from(SELF_SERVE))
    tier = catalog.tiers[tier_key]
    interval = draw(st.sampled_from(sorted(tier.prices)))
    seats = draw(st.integers(tier.seats.included, min(tier.seats.max, tier.seats.included + 30)))
    addons = draw(st.dictionaries(st.sampled_from(sorted(tier.addons)), st.integers(1, 3)))
    plan = Plan(tier_key, interval, seats, addons)
    start = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(
        seconds=draw(st.integers(0, 400 * 86_400)),
        microseconds=draw(st.sampled_from([0, 0, 250_000])),
    )
    period = Period(start, add_months(start, interval.months))
    billed = list(current_billed(catalog, plan, period))
    if billed and draw(st.booleans()):  # a change earlier in the period billed one line anew
        index = draw(st.integers(0, len(billed) - 1))
        later = timedelta(seconds=draw(st.integers(0, 10 * 86_400)))
        billed[index] = replace(
            billed[index],
            billed_minor=draw(st.integers(0, 10**6)),
            billed_from=start + later,
        )
    account = AccountState(
        draw(st.sampled_from(["acme", "acct-000042"])),
        draw(st.integers(1, 10**6)),
        AccountStatus.active,
        "USD",
        plan,
        period,
        None,
        None,
    )
    seats_used = draw(st.integers(0, seats + 5))
    usage = {
        "seats": FeatureUsage("seats", "seats", seats_used, seats, None),
    }
    api_limit = catalog.limit(tier_key, "api_calls", addons)
    if isinstance(api_limit, int) and not isinstance(api_limit, bool):
        used = draw(st.integers(0, 2 * api_limit))
        usage["api_calls"] = FeatureUsage("api_calls", "metered", used, api_limit, period)
    crossings = tuple(
        Crossing(
            f"sig_{feature}",
            account.id,
            f"{feature}_90",
            feature,
            draw(st.sampled_from(["warn", "limit"])),
            90,
            1,
            1,
            start,
            period.end,
            start,
            "self_serve",
        )
        for feature in draw(st.sets(st.sampled_from(sorted(usage))))
    )
    days = draw(st.none() | st.integers(0, 60))
    signals = SignalSummary(
        crossings,
        draw(st.integers(0, 100)),
        (),
        None,
        days,
        draw(st.booleans()),
        draw(st.sampled_from(["self_serve", "sales_assisted"])),
    )
    return OfferInputs(account, tuple(billed), usage, signals)


@st.composite
def moments(draw: st.DrawFn, period: Period) -> datetime:
    span = int((period.end - period.start).total_seconds())
    inside = period.start + timedelta(
        seconds=draw(st.integers(0, span - 1)), microseconds=draw(st.integers(0, 999_999))
    )
    return draw(
        st.sampled_from(
            [*[inside] * 4, period.start, period.end - SECOND, period.end, period.start - SECOND]
        )
    )


@settings(max_examples=150, deadline=None)
@given(st.data(), st.sampled_from(CATALOGS))
def test_the_page_is_the_general_body_byte_for_byte(data: st.DataObject, catalog: Catalog) -> None:
    offer_inputs = data.draw(inputs(catalog))
    plan = plan_offers(catalog, offer_inputs, SIGNER)
    for _ in range(3):
        assert_same_page(catalog, plan, data.draw(moments(offer_inputs.account.period)))


@settings(max_examples=60, deadline=None)
@given(st.data(), st.sampled_from(CATALOGS))
def test_an_interval_change_offer_resets_the_period_on_the_page(
    data: st.DataObject, catalog: Catalog
) -> None:
    """No engine offers one today, but the page must price any change: a yearly switch restarts
    the period (full-year lines, a new next invoice date) and its reasons can be any text."""
    offer_inputs = data.draw(inputs(catalog))
    account = offer_inputs.account
    current = account.plan
    if current.interval is Interval.year or Interval.year not in catalog.tiers[current.tier].prices:
        return
    target = current.with_changes(interval=Interval.year)
    candidate = OfferCandidate(
        OfferEngine.upsell, target, current.tier, ("yearly_saves_✨ 17%", 'a "quote"'), (), 40
    )
    try:
        change = prepare_for_account(catalog, account, target)
    except DomainError:
        return  # not a plan the catalog sells
    plan = plan_offers(catalog, offer_inputs, SIGNER)
    extra = planned_offer(catalog, offer_inputs, candidate, change, SIGNER)
    plan = replace(plan, offers=(extra, *plan.offers))
    for _ in range(3):
        assert_same_page(catalog, plan, data.draw(moments(account.period)))


def test_no_offers_is_an_empty_list() -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    plan = Plan("growth", Interval.month, 10)
    period = Period(start, add_months(start, 1))
    account = AccountState("acme", 1, AccountStatus.active, "USD", plan, period, None, None)
    quiet = OfferInputs(
        account,
        current_billed(BUNDLED, plan, period),
        {},
        SignalSummary((), 0, (), None, None, False, "self_serve"),
    )
    offer_plan = plan_offers(BUNDLED, quiet, SIGNER)
    assert offer_plan.offers == ()
    now = start + timedelta(days=3)
    body = render(offers_page(offer_plan), show_offers(offer_plan, now))
    assert body == b'{"account_id":"acme","in_activation_window":false,"offers":[]}'
