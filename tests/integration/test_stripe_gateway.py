"""StripeBillingGateway through the real SDK against the fake Stripe: previews equal the local
engine, changes apply at the quote's proration date, downgrades wait for the period end."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import stripe

from service.adapters.billing_stripe import StripeBillingGateway
from service.adapters.stripe_api import STRIPE_API_VERSION, StripeBilling
from service.domain.accounts import Plan, moved_to_tier
from service.domain.catalog import Interval, Timing
from service.domain.errors import BillingUnavailable, PaymentDeclined
from service.domain.periods import Period
from service.domain.quotes import Quote, current_billed, quote_change
from service.ports import BillingAccount
from tests.stripe_fixtures_app import (
    GROWTH_7,
    StripeWorld,
    unix,
)

KEY = "upshift:upgrade:upg_test"


def utc(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def linked(world: StripeWorld, plan: Plan, account_id: str = "acme") -> BillingAccount:
    sub = world.subscribe(account_id, plan)
    item = sub["items"].data[0]
    period = Period(utc(item.current_period_start), utc(item.current_period_end))
    return BillingAccount(account_id, "USD", plan, period, sub.customer, sub.id)


def quote(world: StripeWorld, account: BillingAccount, target: Plan) -> Quote:
    billed = current_billed(world.catalog, account.plan, account.period)
    now = world.clock.now().replace(microsecond=0)
    return quote_change(world.catalog, account.plan, account.period, billed, target, now)


@pytest.fixture
def billing(world: StripeWorld) -> StripeBilling:
    return world.billing()


@pytest.fixture
def gateway(billing: StripeBilling) -> StripeBillingGateway:
    return StripeBillingGateway(billing)


GROWTH_AUDIT = Plan("growth", Interval.month, 7, {"audit_log": 1})


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (GROWTH_7, GROWTH_7.with_changes(seats=9)),
        (GROWTH_7, GROWTH_7.with_changes(addons={"api_pack": 2})),
        (GROWTH_AUDIT, Plan("business", Interval.month, 10, {})),
        (GROWTH_AUDIT, GROWTH_AUDIT.with_changes(interval=Interval.year, seats=8)),
        (Plan("starter", Interval.month, 3), Plan("growth", Interval.month, 6, {"api_pack": 1})),
    ],
    ids=["seats", "addon", "tier-drops-addon-and-seats", "monthly-to-yearly", "starter-growth"],
)
def test_preview_equals_the_local_engine(
    world: StripeWorld, gateway: StripeBillingGateway, current: Plan, target: Plan
) -> None:
    account = linked(world, current)
    world.advance(days=11, hours=7, seconds=13)  # an awkward instant: exercises the rounding
    local = quote(world, account, target)
    assert local.timing is Timing.immediate
    preview = gateway.preview(account, local)
    assert preview.lines == local.lines
    assert preview.amount_due == local.amount_due
    assert local.amount_due.minor > 0


def test_apply_charges_the_quote_at_its_proration_date(
    world: StripeWorld, gateway: StripeBillingGateway
) -> None:
    account = linked(world, GROWTH_7)
    world.advance(days=15)
    local = quote(world, account, GROWTH_7.with_changes(seats=9))
    world.advance(minutes=3)  # confirmed a little later: the quote's date still applies
    applied = gateway.apply(account, local, KEY)

    assert applied.amount_charged == local.amount_due
    assert applied.amount_charged.minor == 1_500  # 2 seats credited, 4 charged, half a month
    assert applied.invoice_id is not None and applied.invoice_id.startswith("in_")
    assert applied.period == account.period
    assert applied.billed == local.new_billed
    assert (applied.subscription_id, applied.customer_id) == (
        account.subscription_id,
        account.customer_id,
    )
    assert world.quantities(account.subscription_id or "") == {
        "relay_growth_base_month": 1,
        "relay_growth_seat_month": 4,  # the seat item: purchased 9 - included 5
    }
    [update] = world.fake.requests_for("subscriptions.update")
    assert update.idempotency_key == KEY
    assert update.params["proration_date"] == unix(local.proration_date)
    assert update.params["proration_behavior"] == "always_invoice"
    assert update.params["payment_behavior"] == "pending_if_incomplete"
    invoice = world.sdk.v1.invoices.retrieve(applied.invoice_id)
    # The change's invoice, as Stripe's proration guide identifies it: its billing reason and
    # proration lines that start at the proration date (subscription_proration_date is only set
    # on previews).
    assert invoice.billing_reason == "subscription_update"
    prorations = [
        line for line in invoice.lines.data if line.parent.subscription_item_details.proration
    ]
    assert prorations and {line.period.start for line in prorations} == {unix(local.proration_date)}
    assert invoice.parent.subscription_details.subscription_proration_date is None


def test_an_invoice_whose_lines_do_not_all_fit_is_read_whole(
    world: StripeWorld, gateway: StripeBillingGateway
) -> None:
    """An invoice embeds only its first lines (`lines.has_more`): the change's invoice is still
    recognised, charged and billed line by line from every line (invoices.line_items.list)."""
    account = linked(world, GROWTH_AUDIT)
    world.advance(days=10)
    local = quote(world, account, GROWTH_AUDIT.with_changes(interval=Interval.year, seats=8))
    assert len(local.lines) > 3
    world.fake.embed_lines(2)
    applied = gateway.apply(account, local, KEY)
    assert applied.invoice_id is not None
    assert applied.amount_charged == local.amount_due
    assert applied.billed == local.new_billed
    assert world.fake.requests_for("invoices.line_items.list")


def test_addons_are_items_of_their_own(world: StripeWorld, gateway: StripeBillingGateway) -> None:
    account = linked(world, GROWTH_7)
    world.advance(days=3)
    target = GROWTH_7.with_changes(addons={"api_pack": 2, "projects_pack": 1})
    applied = gateway.apply(account, quote(world, account, target), KEY)
    assert world.quantities(account.subscription_id or "") == {
        "relay_growth_base_month": 1,
        "relay_growth_seat_month": 2,
        "relay_api_pack_month": 2,
        "relay_projects_pack_month": 1,
    }
    remote = gateway.billing.subscription(account.subscription_id or "")
    assert remote.plan is not None and remote.plan.matches(target)
    assert applied.amount_charged.minor > 0


def test_a_tier_change_moves_the_base_item_and_empties_dropped_lines(
    world: StripeWorld, gateway: StripeBillingGateway
) -> None:
    account = linked(world, GROWTH_AUDIT)
    world.advance(days=10)
    target = moved_to_tier(world.catalog, GROWTH_AUDIT, "business")
    assert target == Plan("business", Interval.month, 10, {}, world.catalog.version)
    base_item = next(
        item.id
        for item in world.subscription(account.subscription_id or "")["items"].data
        if item.price.lookup_key == "relay_growth_base_month"
    )
    local = quote(world, account, target)
    applied = gateway.apply(account, local, KEY)
    assert applied.amount_charged == local.amount_due
    # Pending updates take no `deleted` items: dropped lines go to quantity 0 and bill nothing.
    assert world.quantities(account.subscription_id or "") == {
        "relay_business_base_month": 1,
        "relay_growth_seat_month": 0,
        "relay_audit_log_month": 0,
    }
    sub = world.subscription(account.subscription_id or "")
    moved = next(i for i in sub["items"].data if i.price.lookup_key == "relay_business_base_month")
    assert moved.id == base_item
    assert gateway.billing.subscription(sub.id).plan == target

    # Adding seats later reuses the emptied seat item, now at the business seat price.
    now_account = BillingAccount("acme", "USD", target, account.period, sub.customer, sub.id)
    more = target.with_changes(seats=12)
    world.advance(days=1)
    second = quote(world, now_account, more)
    preview = gateway.preview(now_account, second)
    assert preview.amount_due.minor > 0
    gateway.apply(now_account, second, KEY + ":2")
    assert world.quantities(sub.id)["relay_business_seat_month"] == 2


def test_monthly_to_yearly_resets_the_period(
    world: StripeWorld, gateway: StripeBillingGateway
) -> None:
    account = linked(world, GROWTH_AUDIT)
    world.advance(days=5)
    target = GROWTH_AUDIT.with_changes(interval=Interval.year)
    local = quote(world, account, target)
    applied = gateway.apply(account, local, KEY)
    assert applied.period == local.period
    assert applied.period.start == local.proration_date
    assert applied.amount_charged == local.amount_due
    assert set(world.quantities(account.subscription_id or "")) == {
        "relay_growth_base_year",
        "relay_growth_seat_year",
        "relay_audit_log_year",
    }


def test_a_downgrade_is_scheduled_for_the_period_end(
    world: StripeWorld, gateway: StripeBillingGateway
) -> None:
    account = linked(world, GROWTH_7.with_changes(addons={"audit_log": 1}))
    world.advance(days=12)
    target = Plan("starter", Interval.month, 4, {})
    local = quote(world, account, target)
    assert local.timing is Timing.end_of_term
    scheduled = gateway.schedule(account, local, "upshift:schedule:upg_1")
    assert scheduled.schedule_id is not None
    assert scheduled.effective_at == account.period.end
    # A newer downgrade replaces the waiting phase instead of adding a schedule.
    target = Plan("starter", Interval.month, 5, {"api_pack": 1})
    again = gateway.schedule(account, quote(world, account, target), "upshift:schedule:upg_2")
    assert again.schedule_id == scheduled.schedule_id

    subscription_id = account.subscription_id or ""
    world.advance(seconds=int((account.period.end - world.clock.now()).total_seconds()) - 1)
    assert gateway.billing.subscription(subscription_id).plan == account.plan.at_version(
        world.catalog.version
    )
    world.advance(seconds=1)
    after = gateway.billing.subscription(subscription_id)
    assert after.plan == target.at_version(world.catalog.version)
    assert after.period.start == account.period.end
    assert world.quantities(subscription_id) == {
        "relay_starter_base_month": 1,
        "relay_starter_seat_month": 2,
        "relay_api_pack_month": 1,
    }


def test_an_upgrade_releases_a_waiting_downgrade(
    world: StripeWorld, gateway: StripeBillingGateway
) -> None:
    account = linked(world, GROWTH_7)
    world.advance(days=2)
    gateway.schedule(
        account, quote(world, account, Plan("starter", Interval.month, 3)), "upshift:schedule:x"
    )
    gateway.apply(account, quote(world, account, GROWTH_7.with_changes(seats=8)), KEY)
    assert world.subscription(account.subscription_id or "").schedule is None
    world.advance(days=40)
    assert gateway.billing.subscription(account.subscription_id or "").plan == (
        GROWTH_7.with_changes(seats=8).at_version(world.catalog.version)
    )


def test_a_declined_payment_changes_nothing(
    world: StripeWorld, gateway: StripeBillingGateway
) -> None:
    account = linked(world, GROWTH_7)
    world.advance(days=4)
    local = quote(world, account, GROWTH_7.with_changes(seats=10))
    world.fake.fail_next(account.subscription_id or "", "card_declined")
    with pytest.raises(PaymentDeclined) as pending:
        gateway.apply(account, local, KEY)
    assert pending.value.status == 402 and pending.value.code == "payment_failed"
    assert world.quantities(account.subscription_id or "")["relay_growth_seat_month"] == 2
    assert world.fake.update_count(account.subscription_id or "") == 0

    # The same decline as Stripe's 402 card_error (state is the same either way).
    world.fake.pending_update_raises = True
    world.fake.fail_next(account.subscription_id or "", "card_declined")
    with pytest.raises(PaymentDeclined) as card:
        gateway.apply(account, local, KEY + ":2")
    assert (card.value.code, card.value.detail) == ("card_declined", "Your card was declined.")
    assert world.quantities(account.subscription_id or "")["relay_growth_seat_month"] == 2


def test_a_lost_answer_is_recognised_on_retry(world: StripeWorld, billing: StripeBilling) -> None:
    account = linked(world, GROWTH_7)
    world.advance(days=6)
    local = quote(world, account, GROWTH_7.with_changes(seats=9))
    impatient = StripeBillingGateway(billing)
    impatient.client = world.fake.client(max_network_retries=0)
    world.fake.fail_next("subscriptions.update", "timeout_after_apply")
    with pytest.raises(BillingUnavailable):
        impatient.apply(account, local, KEY)
    assert world.fake.update_count(account.subscription_id or "") == 1  # Stripe did apply it

    # The retry (same request, the account still as before): Stripe's state and invoice say
    # the change is done, so it is reported, not sent again.
    gateway = StripeBillingGateway(billing)
    assert gateway.preview(account, local).amount_due == local.amount_due
    applied = gateway.apply(account, local, KEY)
    assert applied.amount_charged == local.amount_due
    assert world.fake.update_count(account.subscription_id or "") == 1


def test_stripe_down_is_billing_unavailable(
    world: StripeWorld, gateway: StripeBillingGateway
) -> None:
    account = linked(world, GROWTH_7)
    world.advance(days=1)
    local = quote(world, account, GROWTH_7.with_changes(seats=8))
    world.fake.fail_next("subscriptions.update", "5xx_before_apply", times=2)
    with pytest.raises(BillingUnavailable) as down:
        gateway.apply(account, local, KEY)
    assert down.value.status == 503 and down.value.retry_after_s > 0
    assert world.fake.update_count(account.subscription_id or "") == 0
    # Stripe saved the first 500 under KEY: after checking that nothing landed, one more try
    # under a key of its own, which failed too.
    calls = world.fake.requests_for("subscriptions.update")
    assert [call.status for call in calls] == [500, 500]
    assert calls[0].idempotency_key == KEY
    assert calls[1].idempotency_key.startswith(f"{KEY}:after-")


def test_prices_are_resolved_once(world: StripeWorld, gateway: StripeBillingGateway) -> None:
    account = linked(world, GROWTH_7)
    world.advance(days=1)
    before = len(world.fake.requests_for("prices.list"))
    for seats in (8, 9, 10):
        gateway.preview(account, quote(world, account, GROWTH_7.with_changes(seats=seats)))
    assert len(world.fake.requests_for("prices.list")) - before <= 2  # 18 keys, 10 a call


def test_unknown_subscription_is_refused(world: StripeWorld, gateway: StripeBillingGateway) -> None:
    account = linked(world, GROWTH_7)
    gone = BillingAccount("acme", "USD", GROWTH_7, account.period, None, "sub_missing")
    with pytest.raises(Exception) as refused:
        gateway.preview(gone, quote(world, account, GROWTH_7.with_changes(seats=8)))
    assert getattr(refused.value, "status", None) == 409
    assert isinstance(refused.value.__cause__, stripe.InvalidRequestError)


def test_the_pinned_api_version_is_the_sdks() -> None:
    assert stripe.api_version == STRIPE_API_VERSION
