"""Contract tests of the fake Stripe server, driven only through the real stripe SDK."""

from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import dataclass
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import stripe

from tests.fakes.stripe_server import FakeStripe

DAY = 86_400
NOV_1 = 1_793_491_200  # 2026-11-01T00:00:00Z
DEC_1 = 1_796_083_200  # 2026-12-01T00:00:00Z


def ts(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp())  # type: ignore[misc]


def expected_share(amount: int, start: int, end: int, at: int) -> int:
    """Independent oracle: round(amount * remaining / span), half away from zero."""
    exact = Fraction(amount * (end - at), end - start)
    magnitude = int(abs(exact) + Fraction(1, 2))
    return magnitude if exact >= 0 else -magnitude


@dataclass
class Catalog:
    product: stripe.Product
    base: stripe.Price
    seats: stripe.Price
    pro: stripe.Price
    base_yearly: stripe.Price


@pytest.fixture
def stripe_client(fake_stripe: FakeStripe) -> stripe.StripeClient:
    return fake_stripe.client()


@pytest.fixture
def catalog(stripe_client: stripe.StripeClient) -> Catalog:
    product = stripe_client.v1.products.create(params={"name": "Upshift"})

    def price(amount: int, key: str, interval: str = "month") -> stripe.Price:
        return stripe_client.v1.prices.create(
            params={
                "unit_amount": amount,
                "currency": "usd",
                "product": product.id,
                "recurring": {"interval": interval},
                "lookup_key": key,
                "nickname": key,
            }
        )

    return Catalog(
        product=product,
        base=price(1000, "base_monthly"),
        seats=price(500, "seat_monthly"),
        pro=price(2000, "pro_monthly"),
        base_yearly=price(10_000, "base_yearly", "year"),
    )


@pytest.fixture
def customer(stripe_client: stripe.StripeClient) -> stripe.Customer:
    return stripe_client.v1.customers.create(params={"email": "ada@example.com", "name": "Ada"})


def subscribe(
    stripe_client: stripe.StripeClient, customer: stripe.Customer, *prices: tuple[stripe.Price, int]
) -> stripe.Subscription:
    return stripe_client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": p.id, "quantity": q} for p, q in prices],
            "metadata": {"plan": "starter"},
        }
    )


def item_for(sub: stripe.Subscription, price: stripe.Price) -> stripe.SubscriptionItem:
    return next(it for it in sub["items"].data if it.price.id == price.id)


def line_view(invoice: stripe.Invoice) -> list[tuple[str, int, int, int, int, bool, str, int]]:
    return [
        (
            line.description,
            line.amount,
            line.period.start,
            line.period.end,
            line.quantity,
            line.parent.subscription_item_details.proration,
            line.pricing.price_details.price,
            line.subtotal,
        )
        for line in invoice.lines.data
    ]


# ----------------------------------------------------------------------------- catalog


def test_prices_are_found_by_lookup_keys(
    stripe_client: stripe.StripeClient, catalog: Catalog
) -> None:
    found = stripe_client.v1.prices.list(params={"lookup_keys": ["seat_monthly", "base_monthly"]})
    assert {p.id for p in found.data} == {catalog.seats.id, catalog.base.id}
    assert all(p.object == "price" and p.livemode is False for p in found.data)
    assert catalog.seats.recurring.interval == "month"
    assert catalog.seats.unit_amount_decimal == 500  # decimal_string -> Decimal("500")

    stripe_client.v1.prices.update(catalog.pro.id, params={"active": False})
    active = stripe_client.v1.prices.list(params={"active": True, "limit": 100})
    assert catalog.pro.id not in {p.id for p in active.data}

    products = stripe_client.v1.products.list(params={"ids": [catalog.product.id]})
    assert [p.id for p in products.data] == [catalog.product.id]
    renamed = stripe_client.v1.products.update(catalog.product.id, params={"name": "Upshift 2"})
    assert (
        stripe_client.v1.products.retrieve(catalog.product.id).name == renamed.name == "Upshift 2"
    )


def test_lookup_key_is_unique_unless_transferred(
    stripe_client: stripe.StripeClient, catalog: Catalog
) -> None:
    params = {
        "unit_amount": 1200,
        "currency": "usd",
        "product": catalog.product.id,
        "recurring": {"interval": "month"},
        "lookup_key": "base_monthly",
    }
    with pytest.raises(stripe.InvalidRequestError) as taken:
        stripe_client.v1.prices.create(params=params)  # type: ignore[arg-type]
    assert taken.value.http_status == 400
    assert taken.value.param == "lookup_key"

    moved = stripe_client.v1.prices.create(params={**params, "transfer_lookup_key": True})  # type: ignore[typeddict-item]
    assert moved.lookup_key == "base_monthly"
    assert stripe_client.v1.prices.retrieve(catalog.base.id).lookup_key is None
    found = stripe_client.v1.prices.list(params={"lookup_keys": ["base_monthly"]})
    assert [p.id for p in found.data] == [moved.id]

    # ...and back again via update, which has the same rule.
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.prices.update(catalog.base.id, params={"lookup_key": "base_monthly"})
    back = stripe_client.v1.prices.update(
        catalog.base.id, params={"lookup_key": "base_monthly", "transfer_lookup_key": True}
    )
    assert back.lookup_key == "base_monthly"


def test_price_amount_is_immutable(stripe_client: stripe.StripeClient, catalog: Catalog) -> None:
    with pytest.raises(stripe.InvalidRequestError) as err:
        stripe_client.v1.prices.update(catalog.base.id, params={"unit_amount": 1})  # type: ignore[typeddict-unknown-key]
    assert err.value.code == "parameter_unknown"
    assert err.value.param == "unit_amount"


# ----------------------------------------------------------------------------- shape


def test_subscription_has_periods_on_items_in_current_api_shape(
    stripe_client: stripe.StripeClient, customer: stripe.Customer, catalog: Catalog
) -> None:
    sub = subscribe(stripe_client, customer, (catalog.base, 1), (catalog.seats, 2))
    raw = sub.to_dict()
    assert sub.status == "active"
    assert "current_period_end" not in raw and "current_period_start" not in raw
    assert sub.billing_cycle_anchor == NOV_1
    assert len(sub["items"].data) == 2
    for item in sub["items"].data:
        assert (item.current_period_start, item.current_period_end) == (NOV_1, DEC_1)
    assert item_for(sub, catalog.seats).quantity == 2

    invoice = stripe_client.v1.invoices.retrieve(sub.latest_invoice)  # type: ignore[arg-type]
    assert invoice.status == "paid"
    assert invoice.amount_due == invoice.amount_paid == invoice.total == 2000
    assert invoice.parent.subscription_details.subscription == sub.id
    assert [ln.amount for ln in invoice.lines.data] == [1000, 1000]
    listed = stripe_client.v1.invoices.list(params={"subscription": sub.id})
    assert [i.id for i in listed.data] == [invoice.id]
    assert stripe_client.v1.customers.retrieve(customer.id).email == "ada@example.com"


def test_expand_and_unknown_ids(
    stripe_client: stripe.StripeClient, customer: stripe.Customer, catalog: Catalog
) -> None:
    sub = subscribe(stripe_client, customer, (catalog.base, 1))
    expanded = stripe_client.v1.subscriptions.retrieve(
        sub.id, params={"expand": ["latest_invoice", "customer", "items.data.price.product"]}
    )
    assert expanded.latest_invoice.status == "paid"  # type: ignore[union-attr]
    assert expanded.customer.email == "ada@example.com"  # type: ignore[union-attr]
    assert expanded["items"].data[0].price.product.name == "Upshift"

    with pytest.raises(stripe.InvalidRequestError) as gone:  # removed from the current API
        stripe_client.v1.subscriptions.retrieve(
            sub.id, params={"expand": ["latest_invoice.payment_intent"]}
        )
    assert gone.value.http_status == 400

    with pytest.raises(stripe.InvalidRequestError) as missing:
        stripe_client.v1.subscriptions.retrieve("sub_doesnotexist")
    assert missing.value.http_status == 404
    assert missing.value.code == "resource_missing"

    with pytest.raises(stripe.InvalidRequestError) as nested:
        stripe_client.v1.subscriptions.update(sub.id, params={"items": [{"price": "price_nope"}]})
    assert (nested.value.http_status, nested.value.param) == (400, "items[0][price]")


def test_requests_need_a_test_api_key(fake_stripe: FakeStripe) -> None:
    with pytest.raises(stripe.AuthenticationError):
        fake_stripe.client(api_key="sk_live_nope").v1.customers.create()


# ----------------------------------------------------------------------------- prorations


def test_stripe_documented_example_10_to_20_mid_period(
    fake_stripe: FakeStripe,
    stripe_client: stripe.StripeClient,
    customer: stripe.Customer,
    catalog: Catalog,
) -> None:
    sub = subscribe(stripe_client, customer, (catalog.base, 1))
    fake_stripe.advance(15 * DAY)  # exactly half of November
    updated = stripe_client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": item_for(sub, catalog.base).id, "price": catalog.pro.id}],
            "proration_behavior": "always_invoice",
        },
    )
    invoice = stripe_client.v1.invoices.retrieve(updated.latest_invoice)  # type: ignore[arg-type]
    assert [
        (ln.amount, ln.parent.subscription_item_details.proration) for ln in invoice.lines.data
    ] == [
        (-500, True),
        (1000, True),
    ]
    assert invoice.lines.data[0].description == "Unused time on 1 × Upshift after 16 Nov 2026"
    assert invoice.lines.data[1].description == "Remaining time on 1 × Upshift after 16 Nov 2026"
    assert invoice.amount_due == 500 and invoice.status == "paid"
    assert invoice.billing_reason == "subscription_update"
    assert item_for(updated, catalog.pro).id == item_for(sub, catalog.base).id


def test_preview_of_a_seat_increase_equals_the_update_invoice(
    fake_stripe: FakeStripe,
    stripe_client: stripe.StripeClient,
    customer: stripe.Customer,
    catalog: Catalog,
) -> None:
    sub = subscribe(stripe_client, customer, (catalog.base, 1), (catalog.seats, 2))
    seats = item_for(sub, catalog.seats)
    fake_stripe.advance(10 * DAY + 7 * 3600 + 13)  # awkward instant: exercises rounding
    change = {"items": [{"id": seats.id, "quantity": 5}], "proration_behavior": "always_invoice"}
    preview = stripe_client.v1.invoices.create_preview(
        params={"customer": customer.id, "subscription": sub.id, "subscription_details": change}  # type: ignore[typeddict-item]
    )
    proration_date = preview.parent.subscription_details.subscription_proration_date
    assert proration_date == fake_stripe.now

    fake_stripe.advance(120)  # the app confirms a bit later, passing the previewed date
    updated = stripe_client.v1.subscriptions.update(
        sub.id,
        params={**change, "proration_date": proration_date},  # type: ignore[typeddict-item]
    )
    invoice = stripe_client.v1.invoices.retrieve(updated.latest_invoice)  # type: ignore[arg-type]

    credit = -expected_share(1000, NOV_1, DEC_1, proration_date)
    charge = expected_share(2500, NOV_1, DEC_1, proration_date)
    assert [ln.amount for ln in invoice.lines.data] == [credit, charge]
    assert line_view(invoice) == line_view(preview)
    assert invoice.amount_due == preview.amount_due == preview.total == credit + charge
    assert invoice.subtotal == preview.subtotal and invoice.currency == preview.currency == "usd"
    assert item_for(updated, catalog.seats).quantity == 5
    assert fake_stripe.update_count(sub.id) == 1


def test_second_change_credits_what_was_billed_not_the_list_price(
    fake_stripe: FakeStripe,
    stripe_client: stripe.StripeClient,
    customer: stripe.Customer,
    catalog: Catalog,
) -> None:
    sub = subscribe(stripe_client, customer, (catalog.seats, 1))
    item = item_for(sub, catalog.seats)
    fake_stripe.advance(15 * DAY)
    t1 = fake_stripe.now
    stripe_client.v1.subscriptions.update(
        sub.id,
        params={"items": [{"id": item.id, "quantity": 3}], "proration_behavior": "always_invoice"},
    )
    fake_stripe.advance(5 * DAY + 3)
    t2 = fake_stripe.now
    second = stripe_client.v1.subscriptions.update(
        sub.id,
        params={"items": [{"id": item.id, "quantity": 4}], "proration_behavior": "always_invoice"},
    )
    invoice = stripe_client.v1.invoices.retrieve(second.latest_invoice)  # type: ignore[arg-type]
    billed_at_t1 = expected_share(1500, NOV_1, DEC_1, t1)  # what 3 seats were charged at t1
    assert [ln.amount for ln in invoice.lines.data] == [
        -expected_share(billed_at_t1, t1, DEC_1, t2),
        expected_share(2000, NOV_1, DEC_1, t2),
    ]
    assert invoice.lines.data[0].quantity == 3 and invoice.lines.data[1].quantity == 4


def test_adding_and_removing_items(
    fake_stripe: FakeStripe,
    stripe_client: stripe.StripeClient,
    customer: stripe.Customer,
    catalog: Catalog,
) -> None:
    sub = subscribe(stripe_client, customer, (catalog.base, 1), (catalog.seats, 2))
    fake_stripe.advance(20 * DAY)
    updated = stripe_client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [
                {"id": item_for(sub, catalog.seats).id, "deleted": True},
                {"price": catalog.pro.id, "quantity": 1},
            ],
            "proration_behavior": "always_invoice",
        },
    )
    assert {it.price.id for it in updated["items"].data} == {catalog.base.id, catalog.pro.id}
    invoice = stripe_client.v1.invoices.retrieve(updated.latest_invoice)  # type: ignore[arg-type]
    at = fake_stripe.now
    assert sorted(ln.amount for ln in invoice.lines.data) == sorted(
        [expected_share(2000, NOV_1, DEC_1, at), -expected_share(1000, NOV_1, DEC_1, at)]
    )


def test_create_prorations_are_billed_on_the_renewal_invoice(
    fake_stripe: FakeStripe,
    stripe_client: stripe.StripeClient,
    customer: stripe.Customer,
    catalog: Catalog,
) -> None:
    sub = subscribe(stripe_client, customer, (catalog.base, 1), (catalog.seats, 2))
    fake_stripe.advance(15 * DAY)
    updated = stripe_client.v1.subscriptions.update(
        sub.id, params={"items": [{"id": item_for(sub, catalog.seats).id, "quantity": 3}]}
    )
    assert updated.latest_invoice == sub.latest_invoice  # nothing invoiced yet
    upcoming = stripe_client.v1.invoices.create_preview(params={"subscription": sub.id})
    assert upcoming.amount_due == -500 + 750 + 1000 + 1500

    events = fake_stripe.advance(DEC_1 - fake_stripe.now)
    renewed = stripe_client.v1.subscriptions.retrieve(sub.id, params={"expand": ["latest_invoice"]})
    invoice = renewed.latest_invoice
    assert invoice.billing_reason == "subscription_cycle"  # type: ignore[union-attr]
    assert invoice.status == "paid"  # type: ignore[union-attr]
    assert line_view(invoice) == line_view(upcoming)  # type: ignore[arg-type]
    assert invoice.amount_due == upcoming.amount_due  # type: ignore[union-attr]
    first = renewed["items"].data[0]
    assert (first.current_period_start, first.current_period_end) == (DEC_1, ts(2027, 1, 1))
    assert "invoice.paid" in [e["type"] for e in events]


def test_interval_change_resets_the_billing_period(
    fake_stripe: FakeStripe,
    stripe_client: stripe.StripeClient,
    customer: stripe.Customer,
    catalog: Catalog,
) -> None:
    sub = subscribe(stripe_client, customer, (catalog.base, 1))
    fake_stripe.advance(10 * DAY)
    at = fake_stripe.now
    updated = stripe_client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": item_for(sub, catalog.base).id, "price": catalog.base_yearly.id}],
            "proration_behavior": "create_prorations",
        },
    )
    item = updated["items"].data[0]
    assert (item.current_period_start, item.current_period_end) == (at, ts(2027, 11, 11))
    assert updated.billing_cycle_anchor == at
    invoice = stripe_client.v1.invoices.retrieve(updated.latest_invoice)  # type: ignore[arg-type]
    assert [
        (ln.amount, ln.parent.subscription_item_details.proration) for ln in invoice.lines.data
    ] == [
        (-expected_share(1000, NOV_1, DEC_1, at), True),
        (10_000, False),
    ]


def test_calendar_months_clamp_to_month_end(
    fake_stripe: FakeStripe, stripe_client: stripe.StripeClient, catalog: Catalog
) -> None:
    fake_stripe.set_time(ts(2027, 1, 31, 12))
    cus = stripe_client.v1.customers.create()
    sub = stripe_client.v1.subscriptions.create(
        params={"customer": cus.id, "items": [{"price": catalog.base.id}]}
    )
    assert sub["items"].data[0].current_period_end == ts(2027, 2, 28, 12)
    fake_stripe.advance(ts(2027, 2, 28, 12) - fake_stripe.now)
    again = stripe_client.v1.subscriptions.retrieve(sub.id)
    assert again["items"].data[0].current_period_end == ts(2027, 3, 31, 12)


# ----------------------------------------------------------------------------- strictness


def test_unknown_and_invalid_parameters_are_rejected(
    fake_stripe: FakeStripe,
    stripe_client: stripe.StripeClient,
    customer: stripe.Customer,
    catalog: Catalog,
) -> None:
    sub = subscribe(stripe_client, customer, (catalog.base, 1))
    with pytest.raises(stripe.InvalidRequestError) as typo:
        stripe_client.v1.subscriptions.update(sub.id, params={"proration_dat": 1})  # type: ignore[typeddict-unknown-key]
    assert (typo.value.http_status, typo.value.code, typo.value.param) == (
        400,
        "parameter_unknown",
        "proration_dat",
    )
    assert "Received unknown parameter: proration_dat" in str(typo.value.user_message)

    with pytest.raises(stripe.InvalidRequestError) as nested:
        stripe_client.v1.subscriptions.update(sub.id, params={"items": [{"pricee": "x"}]})  # type: ignore[typeddict-unknown-key]
    assert nested.value.param == "items[0][pricee]"

    with pytest.raises(stripe.InvalidRequestError) as enum:
        stripe_client.v1.subscriptions.update(sub.id, params={"proration_behavior": "sometimes"})
    assert (enum.value.param, enum.value.code) == ("proration_behavior", "parameter_invalid_enum")

    with pytest.raises(stripe.InvalidRequestError) as preview:
        stripe_client.v1.invoices.create_preview(
            params={"subscription": sub.id, "subscription_details": {"proration": 1}}  # type: ignore[typeddict-unknown-key]
        )
    assert preview.value.param == "subscription_details[proration]"
    assert fake_stripe.update_count(sub.id) == 0


# ----------------------------------------------------------------------------- idempotency


def test_idempotent_replay_and_mismatch(
    fake_stripe: FakeStripe,
    stripe_client: stripe.StripeClient,
    customer: stripe.Customer,
    catalog: Catalog,
) -> None:
    sub = subscribe(stripe_client, customer, (catalog.base, 1), (catalog.seats, 2))
    seats = item_for(sub, catalog.seats)
    params = {"items": [{"id": seats.id, "quantity": 3}], "proration_behavior": "always_invoice"}
    options: stripe.RequestOptions = {"idempotency_key": "upgrade-1"}
    first = stripe_client.v1.subscriptions.update(sub.id, params=params, options=options)  # type: ignore[arg-type]
    again = stripe_client.v1.subscriptions.update(sub.id, params=params, options=options)  # type: ignore[arg-type]
    assert again.to_dict() == first.to_dict()
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert fake_stripe.update_count(sub.id) == 1
    assert len(stripe_client.v1.invoices.list(params={"subscription": sub.id}).data) == 2

    with pytest.raises(stripe.IdempotencyError):
        stripe_client.v1.subscriptions.update(
            sub.id,
            params={"items": [{"id": seats.id, "quantity": 4}]},
            options=options,
        )
    keys = [r.idempotency_key for r in fake_stripe.requests_for("subscriptions.update")]
    assert keys == ["upgrade-1"] * 3


def test_timeout_after_apply_is_retried_and_applied_once(
    fake_stripe: FakeStripe, customer: stripe.Customer, catalog: Catalog
) -> None:
    stripe_client = fake_stripe.client(max_network_retries=2)
    sub = subscribe(stripe_client, customer, (catalog.base, 1), (catalog.seats, 2))
    fake_stripe.advance(3 * DAY)
    fake_stripe.fail_next("subscriptions.update", "timeout_after_apply")
    updated = stripe_client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": item_for(sub, catalog.seats).id, "quantity": 9}],
            "proration_behavior": "always_invoice",
        },
    )
    assert item_for(updated, catalog.seats).quantity == 9
    assert fake_stripe.update_count(sub.id) == 1
    calls = fake_stripe.requests_for("subscriptions.update")
    assert [(c.fault, c.replayed) for c in calls] == [("timeout_after_apply", False), (None, True)]
    assert calls[0].idempotency_key and calls[0].idempotency_key == calls[1].idempotency_key
    assert len(stripe_client.v1.invoices.list(params={"subscription": sub.id}).data) == 2

    no_retry = fake_stripe.client(max_network_retries=0)
    fake_stripe.fail_next(sub.id, "timeout_after_apply")
    with pytest.raises(stripe.APIConnectionError):
        no_retry.v1.subscriptions.update(sub.id, params={"metadata": {"x": "1"}})
    assert fake_stripe.update_count(sub.id) == 2  # applied although the stripe_client saw an error


def test_a_500_is_saved_under_its_idempotency_key_and_replayed(
    fake_stripe: FakeStripe, customer: stripe.Customer, catalog: Catalog
) -> None:
    """docs.stripe.com/api/idempotent_requests: Stripe saves the first response once the
    endpoint began, "including 500 errors"; the SDK does not retry a 500 marked
    Stripe-Should-Retry: false; only a new key runs the request again."""
    stripe_client = fake_stripe.client(max_network_retries=2)
    sub = subscribe(stripe_client, customer, (catalog.base, 1))
    fake_stripe.fail_next("POST /v1/subscriptions/", "5xx_before_apply")
    pro = {"metadata": {"tier": "pro"}}
    for _ in range(2):
        with pytest.raises(stripe.APIError) as failed:
            stripe_client.v1.subscriptions.update(
                sub.id, params=pro, options={"idempotency_key": "k"}
            )
        assert failed.value.http_status == 500
    calls = fake_stripe.requests_for("subscriptions.update")
    assert [(c.status, c.replayed) for c in calls] == [(500, False), (500, True)]
    assert fake_stripe.update_count(sub.id) == 0
    stripe_client.v1.subscriptions.update(sub.id, params=pro, options={"idempotency_key": "k2"})
    assert fake_stripe.update_count(sub.id) == 1

    # A 503 refused in front of the API saves nothing: the SDK retries it (here 3 times).
    fake_stripe.fail_next("subscriptions.update", "503_before_apply", times=3)
    with pytest.raises(stripe.APIError):
        stripe_client.v1.subscriptions.update(sub.id, params={"metadata": {"tier": "max"}})
    assert stripe_client.v1.subscriptions.retrieve(sub.id).metadata["tier"] == "pro"


# ----------------------------------------------------------------------------- payments


def test_decline_with_error_if_incomplete_changes_nothing(
    fake_stripe: FakeStripe,
    stripe_client: stripe.StripeClient,
    customer: stripe.Customer,
    catalog: Catalog,
) -> None:
    sub = subscribe(stripe_client, customer, (catalog.base, 1))
    fake_stripe.advance(DAY)
    fake_stripe.fail_next("subscriptions.update", "card_declined")
    with pytest.raises(stripe.CardError) as declined:
        stripe_client.v1.subscriptions.update(
            sub.id,
            params={
                "items": [{"id": item_for(sub, catalog.base).id, "price": catalog.pro.id}],
                "proration_behavior": "always_invoice",
                "payment_behavior": "error_if_incomplete",
            },
        )
    assert declined.value.http_status == 402
    assert declined.value.code == "card_declined"
    assert declined.value.json_body["error"]["decline_code"] == "generic_decline"  # type: ignore[index]
    after = stripe_client.v1.subscriptions.retrieve(sub.id)
    assert after.to_dict() == sub.to_dict()
    assert after.latest_invoice == sub.latest_invoice
    assert fake_stripe.update_count(sub.id) == 0


def test_decline_with_pending_if_incomplete_keeps_items_and_sets_pending_update(
    fake_stripe: FakeStripe,
    stripe_client: stripe.StripeClient,
    customer: stripe.Customer,
    catalog: Catalog,
) -> None:
    sub = subscribe(stripe_client, customer, (catalog.base, 1), (catalog.seats, 2))
    seats = item_for(sub, catalog.seats)
    fake_stripe.advance(2 * DAY)
    fake_stripe.fail_next("subscriptions.update", "card_declined")
    result = stripe_client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": seats.id, "quantity": 10}],
            "proration_behavior": "always_invoice",
            "payment_behavior": "pending_if_incomplete",
        },
    )
    assert item_for(result, catalog.seats).quantity == 2  # unchanged
    assert result.status == "active"
    pending = result.pending_update
    assert pending is not None
    assert pending.expires_at == fake_stripe.now + 23 * 3600
    assert [(it.id, it.quantity) for it in pending.subscription_items] == [(seats.id, 10)]
    invoice = stripe_client.v1.invoices.retrieve(result.latest_invoice)  # type: ignore[arg-type]
    assert (invoice.status, invoice.attempted, invoice.amount_paid) == ("open", True, 0)
    assert fake_stripe.update_count(sub.id) == 0
    assert fake_stripe.events_of_type("invoice.payment_failed")

    # description is not a pending-update parameter (docs.stripe.com/billing/subscriptions/
    # pending-updates-reference; metadata is, since 2026-05-27.dahlia: test_stripe_shapes)
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.subscriptions.update(
            sub.id, params={"payment_behavior": "pending_if_incomplete", "description": "x"}
        )

    paid = stripe_client.v1.invoices.pay(invoice.id)
    assert paid.status == "paid"
    applied = stripe_client.v1.subscriptions.retrieve(sub.id)
    assert applied.pending_update is None
    assert item_for(applied, catalog.seats).quantity == 10
    assert fake_stripe.events_of_type("customer.subscription.pending_update_applied")


def test_pending_update_expires_and_can_raise_402(
    fake_stripe: FakeStripe,
    stripe_client: stripe.StripeClient,
    customer: stripe.Customer,
    catalog: Catalog,
) -> None:
    sub = subscribe(stripe_client, customer, (catalog.seats, 1))
    fake_stripe.pending_update_raises = True
    fake_stripe.fail_next(sub.id, "card_declined")
    with pytest.raises(stripe.CardError):
        stripe_client.v1.subscriptions.update(
            sub.id,
            params={
                "items": [{"id": item_for(sub, catalog.seats).id, "quantity": 3}],
                "proration_behavior": "always_invoice",
                "payment_behavior": "pending_if_incomplete",
            },
        )
    current = stripe_client.v1.subscriptions.retrieve(sub.id)
    assert current.pending_update is not None
    fake_stripe.advance(23 * 3600)
    expired = stripe_client.v1.subscriptions.retrieve(sub.id)
    assert expired.pending_update is None
    assert item_for(expired, catalog.seats).quantity == 1
    assert stripe_client.v1.invoices.retrieve(current.latest_invoice).status == "void"  # type: ignore[arg-type]
    assert fake_stripe.events_of_type("customer.subscription.pending_update_expired")


def test_declined_renewal_makes_the_subscription_past_due(
    fake_stripe: FakeStripe,
    stripe_client: stripe.StripeClient,
    customer: stripe.Customer,
    catalog: Catalog,
) -> None:
    sub = subscribe(stripe_client, customer, (catalog.base, 1))
    fake_stripe.fail_next("renewal", "card_declined")
    fake_stripe.advance(DEC_1 - NOV_1)
    renewed = stripe_client.v1.subscriptions.retrieve(sub.id, params={"expand": ["latest_invoice"]})
    assert renewed.status == "past_due"
    assert renewed.latest_invoice.status == "open"  # type: ignore[union-attr]
    stripe_client.v1.invoices.pay(renewed.latest_invoice.id)  # type: ignore[union-attr]
    assert stripe_client.v1.subscriptions.retrieve(sub.id).status == "active"


# ----------------------------------------------------------------------------- schedules


def test_schedule_phase_applies_at_the_boundary(
    fake_stripe: FakeStripe,
    stripe_client: stripe.StripeClient,
    customer: stripe.Customer,
    catalog: Catalog,
) -> None:
    sub = subscribe(stripe_client, customer, (catalog.base, 1), (catalog.seats, 3))
    fake_stripe.advance(5 * DAY)
    schedule = stripe_client.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    phase = schedule.phases[0]
    assert (phase.start_date, phase.end_date) == (NOV_1, DEC_1)
    schedule = stripe_client.v1.subscription_schedules.update(
        schedule.id,
        params={
            "end_behavior": "release",
            "phases": [
                {
                    "start_date": phase.start_date,
                    "end_date": phase.end_date,
                    "items": [
                        {"price": it.price, "quantity": it.quantity} for it in phase["items"]
                    ],
                },
                {
                    "items": [
                        {"price": catalog.pro.id, "quantity": 1},
                        {"price": catalog.seats.id, "quantity": 3},
                    ],
                    "duration": {"interval": "month", "interval_count": 1},
                },
            ],
        },
    )
    assert stripe_client.v1.subscriptions.retrieve(sub.id).schedule == schedule.id

    fake_stripe.advance(DEC_1 - fake_stripe.now - 1)
    before = stripe_client.v1.subscriptions.retrieve(sub.id)
    assert {it.price.id for it in before["items"].data} == {catalog.base.id, catalog.seats.id}

    fake_stripe.advance(1)
    after = stripe_client.v1.subscriptions.retrieve(sub.id, params={"expand": ["latest_invoice"]})
    assert {it.price.id for it in after["items"].data} == {catalog.pro.id, catalog.seats.id}
    assert after.latest_invoice.amount_due == 2000 + 1500  # type: ignore[union-attr]
    current = stripe_client.v1.subscription_schedules.retrieve(schedule.id).current_phase
    assert (current.start_date, current.end_date) == (DEC_1, ts(2027, 1, 1))  # type: ignore[union-attr]

    fake_stripe.advance(ts(2027, 1, 1) - fake_stripe.now)
    done = stripe_client.v1.subscription_schedules.retrieve(schedule.id)
    assert (done.status, done.released_subscription) == ("released", sub.id)
    assert stripe_client.v1.subscriptions.retrieve(sub.id).schedule is None


def test_cancel_subscription(
    fake_stripe: FakeStripe,
    stripe_client: stripe.StripeClient,
    customer: stripe.Customer,
    catalog: Catalog,
) -> None:
    sub = subscribe(stripe_client, customer, (catalog.base, 1))
    canceled = stripe_client.v1.subscriptions.cancel(sub.id)
    assert canceled.status == "canceled" and canceled.ended_at == fake_stripe.now
    assert fake_stripe.events_of_type("customer.subscription.deleted")
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.subscriptions.update(sub.id, params={"items": [{"price": catalog.pro.id}]})


# ----------------------------------------------------------------------------- webhooks


def test_webhook_signature_verifies_with_the_sdk(
    fake_stripe: FakeStripe,
    stripe_client: stripe.StripeClient,
    customer: stripe.Customer,
    catalog: Catalog,
) -> None:
    fresh = {e["type"] for e in fake_stripe.events}  # nothing left over from earlier tests
    assert fresh == {"customer.created", "product.created", "price.created"}
    sub = subscribe(stripe_client, customer, (catalog.base, 1))
    stripe_client.v1.subscriptions.update(sub.id, params={"metadata": {"plan": "growth"}})
    updated = fake_stripe.events_of_type("customer.subscription.updated")[-1]
    assert updated["data"]["previous_attributes"] == {"metadata": {"plan": "starter"}}

    body, header = fake_stripe.signed_payload(updated)
    event = stripe.Webhook.construct_event(body, header, fake_stripe.webhook_secret)
    assert (event.id, event.type) == (updated["id"], "customer.subscription.updated")
    assert event.data.object.metadata["plan"] == "growth"

    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body + b" ", header, fake_stripe.webhook_secret)

    received: list[str] = []

    def endpoint(payload: bytes, signature: str) -> int:
        verified = stripe.Webhook.construct_event(payload, signature, fake_stripe.webhook_secret)
        received.append(verified.type)
        return 200

    results = fake_stripe.deliver(endpoint)
    assert [status for _, status in results] == [200] * len(fake_stripe.events)
    assert received == [e["type"] for e in fake_stripe.events]
    assert "customer.subscription.created" in received
    assert fake_stripe.deliver(endpoint) == []  # nothing new since the last delivery
    assert json.loads(body)["object"] == "event"


def test_deliver_posts_signed_events_to_a_url(
    fake_stripe: FakeStripe, stripe_client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    received: list[tuple[bytes, str]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((body, self.headers["Stripe-Signature"]))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/webhooks/stripe"
        results = fake_stripe.deliver(url)
    finally:
        server.shutdown()
        server.server_close()
    assert [status for _, status in results] == [204]
    event = stripe.Webhook.construct_event(*received[0], fake_stripe.webhook_secret)
    assert (event.type, event.data.object.id) == ("customer.created", customer.id)


# ----------------------------------------------------------------------------- discounts, tax


def test_a_renewal_invoice_with_a_coupon_tax_and_credit_balance(
    fake_stripe: FakeStripe,
    stripe_client: stripe.StripeClient,
    customer: stripe.Customer,
    catalog: Catalog,
) -> None:
    """docs.stripe.com/api/invoices/object: subtotal - total_discount_amounts =
    total_excluding_tax; exclusive tax on top is total; the customer's credit balance comes off
    amount_due (starting_balance / ending_balance)."""
    coupon = stripe_client.v1.coupons.create(params={"percent_off": 25, "duration": "forever"})
    rate = stripe_client.v1.tax_rates.create(
        params={"display_name": "VAT", "percentage": 20.0, "inclusive": False}
    )
    sub = subscribe(stripe_client, customer, (catalog.base, 1), (catalog.seats, 3))
    updated = stripe_client.v1.subscriptions.update(
        sub.id,
        params={"discounts": [{"coupon": coupon.id}], "default_tax_rates": [rate.id]},
    )
    [discount_id] = updated.discounts
    assert updated.default_tax_rates[0].id == rate.id
    stripe_client.v1.customers.update(customer.id, params={"balance": -1_000})
    fake_stripe.set_time(DEC_1)
    renewal = stripe_client.v1.invoices.retrieve(
        stripe_client.v1.subscriptions.retrieve(sub.id).latest_invoice  # type: ignore[arg-type]
    )
    assert renewal.billing_reason == "subscription_cycle"
    assert renewal.subtotal == 1_000 + 1_500
    assert [(d.discount, d.amount) for d in renewal.total_discount_amounts] == [(discount_id, 625)]
    assert [(line.amount, line.discount_amounts[0].amount) for line in renewal.lines.data] == [
        (1_000, 250),
        (1_500, 375),
    ]
    assert renewal.total_excluding_tax == 1_875
    assert [
        (t.tax_rate_details.tax_rate, t.amount, t.taxable_amount) for t in renewal.total_taxes
    ] == [(rate.id, 375, 1_875)]
    assert renewal.total == 2_250
    assert (renewal.starting_balance, renewal.ending_balance) == (-1_000, 0)
    assert (renewal.amount_due, renewal.amount_paid, renewal.status) == (1_250, 1_250, "paid")
    assert stripe_client.v1.customers.retrieve(customer.id).balance == 0


def test_prorations_are_net_of_a_percent_off_discount(
    fake_stripe: FakeStripe,
    stripe_client: stripe.StripeClient,
    customer: stripe.Customer,
    catalog: Catalog,
) -> None:
    """billing_mode flexible, proration_discounts "included": a proration's amount is "Net
    amount (after discounts)", its discount listed at 0, and the invoice's
    total_discount_amounts exclude it (docs.stripe.com/changelog/clover/2025-09-30/
    itemize-proration-discount-amounts); the credit is what was paid (flexible billing mode)."""
    sub = subscribe(stripe_client, customer, (catalog.seats, 2))
    coupon = stripe_client.v1.coupons.create(params={"percent_off": 50, "duration": "forever"})
    stripe_client.v1.subscriptions.update(sub.id, params={"discounts": [{"coupon": coupon.id}]})
    fake_stripe.advance(15 * DAY)  # half of November
    item = item_for(sub, catalog.seats)
    details = {
        "items": [{"id": item.id, "quantity": 4}],
        "proration_behavior": "always_invoice",
    }
    preview = stripe_client.v1.invoices.create_preview(
        params={"subscription": sub.id, "subscription_details": details}
    )
    updated = stripe_client.v1.subscriptions.update(
        sub.id, params={"items": details["items"], "proration_behavior": "always_invoice"}
    )
    invoice = stripe_client.v1.invoices.retrieve(updated.latest_invoice)  # type: ignore[arg-type]
    for shown in (preview, invoice):
        # The 2 seats were paid in full (1,000): credit 500; 4 seats for half: 1,000, net 500.
        assert [line.amount for line in shown.lines.data] == [-500, 500]
        assert [line.discount_amounts[0].amount for line in shown.lines.data] == [0, 0]
        assert shown.total_discount_amounts == []
        assert (shown.subtotal, shown.total, shown.amount_due) == (0, 0, 0)
    # The next change credits the net amount the 4 seats were billed.
    fake_stripe.advance(5 * DAY)
    again = stripe_client.v1.subscriptions.update(
        sub.id,
        params={"items": [{"id": item.id, "quantity": 2}], "proration_behavior": "always_invoice"},
    )
    credit = stripe_client.v1.invoices.retrieve(again.latest_invoice).lines.data[0]  # type: ignore[arg-type]
    assert credit.amount == -expected_share(500, NOV_1 + 15 * DAY, DEC_1, NOV_1 + 20 * DAY)


def test_a_once_coupon_is_spent_by_one_invoice_and_a_repeating_one_ends(
    fake_stripe: FakeStripe,
    stripe_client: stripe.StripeClient,
    customer: stripe.Customer,
    catalog: Catalog,
) -> None:
    once = stripe_client.v1.coupons.create(params={"percent_off": 50, "duration": "once"})
    sub = subscribe(stripe_client, customer, (catalog.base, 1))
    stripe_client.v1.subscriptions.update(sub.id, params={"discounts": [{"coupon": once.id}]})
    fake_stripe.set_time(DEC_1)
    first = stripe_client.v1.subscriptions.retrieve(sub.id)
    assert stripe_client.v1.invoices.retrieve(first.latest_invoice).total == 500  # type: ignore[arg-type]
    assert first.discounts == []

    months = stripe_client.v1.coupons.create(
        params={
            "amount_off": 300,
            "currency": "usd",
            "duration": "repeating",
            "duration_in_months": 1,
        }
    )
    repeating = stripe_client.v1.subscriptions.update(
        sub.id, params={"discounts": [{"coupon": months.id}], "expand": ["discounts"]}
    )
    assert repeating.discounts[0].end == ts(2027, 1, 1)  # type: ignore[union-attr]
    fake_stripe.set_time(ts(2027, 1, 1))
    january = stripe_client.v1.subscriptions.retrieve(sub.id).latest_invoice
    assert stripe_client.v1.invoices.retrieve(january).total == 1_000  # type: ignore[arg-type]


def test_coupons_and_tax_rates_refuse_what_stripe_refuses(
    stripe_client: stripe.StripeClient, customer: stripe.Customer, catalog: Catalog
) -> None:
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.coupons.create(params={"duration": "forever"})  # neither kind of off
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.coupons.create(params={"percent_off": 10, "duration": "repeating"})
    euros = stripe_client.v1.coupons.create(
        params={"amount_off": 100, "currency": "eur", "duration": "forever"}
    )
    sub = subscribe(stripe_client, customer, (catalog.base, 1))
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.subscriptions.update(sub.id, params={"discounts": [{"coupon": euros.id}]})
    with pytest.raises(stripe.InvalidRequestError) as refused:
        stripe_client.v1.tax_rates.create(
            params={"display_name": "GST", "percentage": 10.0, "inclusive": True}
        )
    assert refused.value.code == "fake_unsupported_parameter"
