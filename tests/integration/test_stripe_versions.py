"""A Stripe subscription moved to a later catalog version (issue 16, point 4), through the real
SDK against the Stripe double: at once with Stripe's proration, or at the period end by a
subscription schedule; the quote is what Stripe charges, and the old price stays for others."""

from __future__ import annotations

from dataclasses import replace

import pytest

from service.adapters.billing_stripe import StripeBillingGateway
from service.adapters.catalog_loader import load_catalogs
from service.adapters.stripe_setup import StripeCatalogStore
from service.domain.catalog import Timing
from service.domain.quotes import current_billed, prepare_change, price_change
from service.services.stripe_sync import sync_stripe
from tests.conftest import CATALOG_PATH
from tests.fakes.clock import FakeClock
from tests.fakes.stripe_server import FakeStripe
from tests.integration.test_stripe_gateway import linked
from tests.stripe_fixtures_app import GROWTH_7, StripeWorld, unix

HISTORY = load_catalogs(CATALOG_PATH.parent)  # the bundled versions
OLD, NEW = HISTORY.names  # NEW raises Growth monthly from 99.00 to 119.00


@pytest.fixture
def versioned(fake_stripe: FakeStripe, clock: FakeClock) -> StripeWorld:
    """Every bundled version synced into the Stripe double; the version in force is NEW."""
    catalog = HISTORY.latest
    sdk = fake_stripe.client()
    fake_stripe.set_time(unix(clock.now()))
    sync_stripe(StripeCatalogStore(sdk), catalog, apply=True)
    fake_stripe.deliver(lambda body, signature: None)
    return StripeWorld(fake_stripe, clock, catalog, sdk)


def test_an_immediate_move_swaps_the_base_price_with_the_quoted_proration(
    versioned: StripeWorld,
) -> None:
    world = versioned
    current = GROWTH_7.at_version(OLD)
    account = linked(world, current)
    gateway = StripeBillingGateway(world.billing())
    assert gateway.billing.subscription(account.subscription_id or "").plan == current
    world.advance(days=10)
    change = prepare_change(world.catalog, current, current.at_version(NEW))
    assert (change.timing, change.new_mrr.minor) == (Timing.immediate, 11_900 + 2 * 1_500)
    now = world.clock.now().replace(microsecond=0)
    quote = price_change(
        change, account.period, current_billed(world.catalog, current, account.period), now
    )
    applied = gateway.apply(account, quote, "upshift:migrate:acme:" + NEW)
    # Stripe prorates the swapped base price exactly as quoted: 20.00 for the remaining days.
    assert applied.amount_charged == quote.amount_due
    assert 0 < quote.amount_due.minor < 2_000
    remote = gateway.billing.subscription(account.subscription_id or "")
    assert remote.plan == current.at_version(NEW)
    quantities = world.quantities(account.subscription_id or "")
    assert quantities["relay_growth_base_month_2026_12"] == 1
    assert quantities.get("relay_growth_base_month", 0) == 0
    # The old price stays active: other accounts are still billed at it.
    old_price = world.sdk.v1.prices.retrieve(world.price_id("relay_growth_base_month"))
    assert old_price.active


def test_an_end_of_term_move_is_a_schedule_that_applies_at_the_period_end(
    versioned: StripeWorld,
) -> None:
    world = versioned
    current = GROWTH_7.at_version(OLD)
    account = linked(world, current)
    gateway = StripeBillingGateway(world.billing())
    world.advance(days=5)
    change = replace(
        prepare_change(world.catalog, current, current.at_version(NEW)), timing=Timing.end_of_term
    )
    now = world.clock.now().replace(microsecond=0)
    quote = price_change(
        change, account.period, current_billed(world.catalog, current, account.period), now
    )
    assert quote.amount_due.minor == 0 and quote.effective_at == account.period.end
    scheduled = gateway.schedule(account, quote, "upshift:migrate:acme:" + NEW)
    assert scheduled.schedule_id is not None
    subscription_id = account.subscription_id or ""
    world.advance(seconds=int((account.period.end - world.clock.now()).total_seconds()) - 1)
    assert gateway.billing.subscription(subscription_id).plan == current
    world.advance(seconds=1)
    after = gateway.billing.subscription(subscription_id)
    assert after.plan == current.at_version(NEW)
    assert after.period.start == account.period.end
