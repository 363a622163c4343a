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
from service.domain.quotes import Quote, current_billed, prepare_change, price_change
from service.ports import BillingAccount
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


def moved(world: StripeWorld, days: int, timing: Timing) -> tuple[BillingAccount, Quote]:
    """An account subscribed to Growth at OLD, `days` into its period, and the quote that moves
    it to NEW at `timing` (a catalog migration's change: same plan, later version)."""
    current = GROWTH_7.at_version(OLD)
    account = linked(world, current)
    world.advance(days=days)
    change = prepare_change(world.catalog, current, current.at_version(NEW))
    assert (change.timing, change.new_mrr.minor) == (Timing.immediate, 11_900 + 2 * 1_500)
    now = world.clock.now().replace(microsecond=0)
    billed = current_billed(world.catalog, current, account.period)
    return account, price_change(replace(change, timing=timing), account.period, billed, now)


def test_an_immediate_move_swaps_the_base_price_with_the_quoted_proration(
    versioned: StripeWorld,
) -> None:
    world = versioned
    gateway = StripeBillingGateway(world.billing())
    account, quote = moved(world, 10, Timing.immediate)
    subscription_id = account.subscription_id or ""
    assert gateway.billing.subscription(subscription_id).plan == account.plan
    applied = gateway.apply(account, quote, "upshift:migrate:acme:" + NEW)
    # Stripe prorates the swapped base price exactly as quoted, for the 20 of 30 days left:
    # 119.00 x 20/30 = 79.33 charged, 99.00 x 20/30 = 66.00 credited.
    assert applied.amount_charged == quote.amount_due
    assert quote.amount_due.minor == 7_933 - 6_600
    remote = gateway.billing.subscription(subscription_id)
    assert remote.plan == account.plan.at_version(NEW)
    quantities = world.quantities(subscription_id)
    assert quantities["relay_growth_base_month_2026_12"] == 1
    assert quantities.get("relay_growth_base_month", 0) == 0
    # The old price stays active: other accounts are still billed at it.
    old_price = world.sdk.v1.prices.retrieve(world.price_id("relay_growth_base_month"))
    assert old_price.active


def test_an_end_of_term_move_is_a_schedule_that_applies_at_the_period_end(
    versioned: StripeWorld,
) -> None:
    world = versioned
    gateway = StripeBillingGateway(world.billing())
    account, quote = moved(world, 5, Timing.end_of_term)
    assert quote.amount_due.minor == 0 and quote.effective_at == account.period.end
    scheduled = gateway.schedule(account, quote, "upshift:migrate:acme:" + NEW)
    assert scheduled.schedule_id is not None
    subscription_id = account.subscription_id or ""
    world.advance(seconds=int((account.period.end - world.clock.now()).total_seconds()) - 1)
    assert gateway.billing.subscription(subscription_id).plan == account.plan
    world.advance(seconds=1)
    after = gateway.billing.subscription(subscription_id)
    assert after.plan == account.plan.at_version(NEW)
    assert after.period.start == account.period.end
