"""The Stripe double's test clocks, driven through the real SDK: what belongs to a clock lives
on its frozen time (docs.stripe.com/api/test_clocks, docs.stripe.com/billing/testing/
test-clocks/api-advanced-usage)."""

from __future__ import annotations

import pytest
import stripe

from tests.contract.test_stripe_fake import DAY, DEC_1, NOV_1, expected_share
from tests.fakes.stripe_server import FakeStripe

OCT_1 = 1_790_812_800  # 2026-10-01T00:00:00Z
OCT_11 = OCT_1 + 10 * DAY


@pytest.fixture
def client(fake_stripe: FakeStripe) -> stripe.StripeClient:
    return fake_stripe.client()


def seats_price(client: stripe.StripeClient) -> stripe.Price:
    product = client.v1.products.create(params={"name": "Seats"})
    return client.v1.prices.create(
        params={
            "product": product.id,
            "unit_amount": 3_000,
            "currency": "usd",
            "recurring": {"interval": "month"},
        }
    )


def on_a_clock(
    client: stripe.StripeClient, frozen_time: int
) -> tuple[stripe.test_helpers.TestClock, stripe.Subscription]:
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": frozen_time})
    customer = client.v1.customers.create(params={"test_clock": clock.id})
    price = seats_price(client)
    sub = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": price.id, "quantity": 2}]}
    )
    return clock, sub


def test_what_belongs_to_a_clock_lives_on_its_frozen_time(
    fake_stripe: FakeStripe, client: stripe.StripeClient
) -> None:
    assert fake_stripe.now == NOV_1
    clock, sub = on_a_clock(client, OCT_1)
    assert (clock.status, clock.frozen_time, clock.object) == (
        "ready",
        OCT_1,
        "test_helpers.test_clock",
    )
    item = sub["items"].data[0]
    assert (sub.test_clock, sub.created) == (clock.id, OCT_1)
    assert (item.current_period_start, item.current_period_end) == (OCT_1, NOV_1)
    assert client.v1.customers.retrieve(sub.customer).test_clock == clock.id  # type: ignore[arg-type]
    invoice = client.v1.invoices.retrieve(sub.latest_invoice)  # type: ignore[arg-type]
    assert (invoice.test_clock, invoice.created) == (clock.id, OCT_1)

    # The fake's own clock moves everything else, not what is on the test clock.
    fake_stripe.advance(45 * DAY)
    still = client.v1.subscriptions.retrieve(sub.id)
    assert still["items"].data[0].current_period_end == NOV_1
    assert still.latest_invoice == sub.latest_invoice


def test_advancing_the_clock_renews_its_subscriptions(
    fake_stripe: FakeStripe, client: stripe.StripeClient
) -> None:
    clock, sub = on_a_clock(client, OCT_1)
    seen = len(fake_stripe.events)
    answer = client.v1.test_helpers.test_clocks.advance(
        clock.id, params={"frozen_time": NOV_1 + 5 * DAY}
    )
    # "A TestClock object with status Advancing is returned upon success"; done when Ready.
    assert (answer.status, answer.frozen_time) == ("advancing", OCT_1)
    assert answer.status_details.advancing.target_frozen_time == NOV_1 + 5 * DAY
    ready = client.v1.test_helpers.test_clocks.retrieve(clock.id)
    assert (ready.status, ready.frozen_time) == ("ready", NOV_1 + 5 * DAY)
    renewed = client.v1.subscriptions.retrieve(sub.id)
    item = renewed["items"].data[0]
    assert (item.current_period_start, item.current_period_end) == (NOV_1, DEC_1)
    invoice = client.v1.invoices.retrieve(renewed.latest_invoice)  # type: ignore[arg-type]
    assert (invoice.billing_reason, invoice.amount_paid) == ("subscription_cycle", 6_000)
    types = [event["type"] for event in fake_stripe.events[seen:]]
    assert types[0] == "test_helpers.test_clock.advancing"
    assert types[-1] == "test_helpers.test_clock.ready"
    assert "customer.subscription.updated" in types
    assert [c.id for c in client.v1.test_helpers.test_clocks.list().data] == [clock.id]


def test_a_clock_advances_forward_and_at_most_two_intervals(
    fake_stripe: FakeStripe, client: stripe.StripeClient
) -> None:
    empty = client.v1.test_helpers.test_clocks.create(params={"frozen_time": OCT_1})
    with pytest.raises(stripe.InvalidRequestError) as back:
        client.v1.test_helpers.test_clocks.advance(empty.id, params={"frozen_time": OCT_1})
    assert back.value.param == "frozen_time"
    with pytest.raises(stripe.InvalidRequestError) as years:  # no subscription: two years
        client.v1.test_helpers.test_clocks.advance(
            empty.id, params={"frozen_time": OCT_1 + 800 * DAY}
        )
    assert years.value.param == "frozen_time"
    clock, _ = on_a_clock(client, OCT_1)
    with pytest.raises(stripe.InvalidRequestError) as months:  # monthly: two months
        client.v1.test_helpers.test_clocks.advance(
            clock.id, params={"frozen_time": OCT_1 + 62 * DAY}
        )
    assert months.value.param == "frozen_time"
    assert client.v1.test_helpers.test_clocks.retrieve(clock.id).frozen_time == OCT_1
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.customers.create(params={"test_clock": "clock_unknown"})
    assert (missing.value.code, missing.value.param) == ("resource_missing", "test_clock")


def test_proration_is_at_the_clocks_time_and_dates_outside_its_period_are_refused(
    fake_stripe: FakeStripe, client: stripe.StripeClient
) -> None:
    """`proration_date` "must be within the current subscription period"
    (InvoiceCreatePreviewParams.subscription_details.proration_date): the period the clock has
    reached, whatever time the rest of the account is at."""
    clock, sub = on_a_clock(client, OCT_1)
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": OCT_11})
    item = sub["items"].data[0]
    change = {"items": [{"id": item.id, "quantity": 5}], "proration_behavior": "always_invoice"}
    preview = client.v1.invoices.create_preview(
        params={"subscription": sub.id, "subscription_details": change}  # type: ignore[typeddict-item]
    )
    # Without a proration date the preview prorates at the clock's time, not the fake's.
    assert preview.parent.subscription_details.subscription_proration_date == OCT_11
    assert fake_stripe.now == NOV_1
    charge = expected_share(15_000, OCT_1, NOV_1, OCT_11)
    credit = -expected_share(6_000, OCT_1, NOV_1, OCT_11)
    assert preview.amount_due == charge + credit

    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.subscriptions.update(
            sub.id,
            params={**change, "proration_date": NOV_1 + 3 * DAY},  # type: ignore[typeddict-item]
        )
    assert refused.value.param == "proration_date"
    updated = client.v1.subscriptions.update(
        sub.id,
        params={**change, "proration_date": OCT_11},  # type: ignore[typeddict-item]
    )
    invoice = client.v1.invoices.retrieve(updated.latest_invoice)  # type: ignore[arg-type]
    assert (invoice.amount_paid, invoice.created) == (preview.amount_due, OCT_11)
    assert [line.period.start for line in invoice.lines.data] == [OCT_11, OCT_11]
