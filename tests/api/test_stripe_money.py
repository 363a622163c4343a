"""Stripe mode and money as Stripe bills it: the subscription's currency, its discounts, tax and
the customer's credit balance (issue 13, points 9 and 10). The real SDK against the fake Stripe.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.api.test_accounts import assert_problem
from tests.api.test_upgrades import report_active_seats, seat_offer_token
from tests.stripe_fixtures_app import GROWTH_7, StripeWorld, ledger_rows


@pytest.fixture
def acme(
    stripe_http: TestClient, admin_headers: dict[str, str], world: StripeWorld
) -> dict[str, Any]:
    sub = world.subscribe("acme", GROWTH_7)
    account = world.link(stripe_http, admin_headers, "acme", GROWTH_7, sub)
    world.fake.deliver(lambda body, signature: None)  # the subscription's creation is known
    world.advance(days=15)  # half of the 30-day period left
    return account


def upgrade(http: TestClient, headers: dict[str, str], body: dict, key: str) -> Any:
    return http.post(
        "/v1/accounts/acme/upgrades", json=body, headers={**headers, "Idempotency-Key": key}
    )


def quote(
    http: TestClient, headers: dict[str, str], account_id: str = "acme", seats: int = 9
) -> Any:
    return http.post(
        f"/v1/accounts/{account_id}/quotes", json={"target": {"seats": seats}}, headers=headers
    )


def ledger_mrr(db: Engine, account_id: str, currency: str) -> int:
    return sum(
        row.mrr_delta_minor for row in ledger_rows(db, account_id) if row.currency == currency
    )


def money(minor: int, currency: str = "USD") -> dict[str, Any]:
    return {"amount_minor": minor, "currency": currency}


# --- point 9: the subscription's currency ------------------------------------------------------


def euro_subscription(world: StripeWorld, account_id: str, **extra: Any) -> Any:
    """Growth with 7 seats billed in EUR: EUR prices an operator made for the catalog's lines
    (tagged with their lookup key in metadata; the lookup keys themselves are the USD prices')."""
    product = world.sdk.v1.prices.retrieve(world.price_id("relay_growth_base_month")).product
    prices = {
        key: world.sdk.v1.prices.create(
            params={
                "product": str(product),
                "unit_amount": amount,
                "currency": "eur",
                "recurring": {"interval": "month"},
                "metadata": {"upshift_lookup_key": key},
            }
        )
        for key, amount in (("relay_growth_base_month", 9_000), ("relay_growth_seat_month", 1_400))
    }
    customer = world.sdk.v1.customers.create(params={"name": account_id})
    return world.sdk.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [
                {"price": prices["relay_growth_base_month"].id, "quantity": 1},
                {"price": prices["relay_growth_seat_month"].id, "quantity": 2},
            ],
            **extra,
        }
    )


def test_a_subscription_billed_in_euros_moves_the_ledger_in_euros(
    stripe_http: TestClient, admin_headers: dict[str, str], world: StripeWorld, db: Engine
) -> None:
    """Fails before: the webhook sync recorded 12,900 USD (the catalog's list price)."""
    stripe_http.put(
        "/v1/accounts/beta",
        json={"tier": "starter", "seats": 3, "status": "canceled"},
        headers=admin_headers,
    )
    sub = euro_subscription(world, "beta", metadata={"upshift_account_id": "beta"})
    world.deliver(stripe_http)
    [entry] = ledger_rows(db, "beta")
    assert (entry.kind, entry.source, entry.currency) == ("new", "webhook", "EUR")
    assert entry.mrr_after_minor == 9_000 + 2 * 1_400
    assert entry.stripe_subscription_id == sub.id
    state = stripe_http.get("/v1/accounts/beta", headers=admin_headers).json()
    assert (state["currency"], state["tier"], state["seats"]) == ("EUR", "growth", 7)
    assert ledger_mrr(db, "beta", "EUR") == world.billing().subscription(sub.id).mrr.minor

    # The catalog sells in USD only: no change can be priced for an account billed in EUR.
    body = assert_problem(quote(stripe_http, admin_headers, "beta"), 409, "currency_mismatch")
    assert "EUR" in body["detail"] and "USD" in body["detail"]
    assert world.fake.requests_for("invoices.create_preview") == []
    # Every seat in use would bring a seat offer (as for acme below): none is priced in USD.
    event = {
        "event_id": "beta-seats",
        "account_id": "beta",
        "feature": "seats",
        "quantity": 7,
        "action": "set",
        "timestamp": world.clock.now().isoformat(),
    }
    usage = stripe_http.post("/v1/usage", json={"events": [event]}, headers=admin_headers)
    assert usage.status_code in (200, 201, 207) and usage.json()["accepted"] == 1, usage.text
    offers = stripe_http.get("/v1/accounts/beta/upgrade-offers", headers=admin_headers)
    assert offers.status_code == 200, offers.text
    assert all(offer["target"] is None for offer in offers.json()["offers"])

    # Canceled in the Dashboard: churn, in the currency it was billed in.
    world.sdk.v1.subscriptions.cancel(sub.id)
    world.deliver(stripe_http)
    churn = ledger_rows(db, "beta")[-1]
    assert (churn.kind, churn.currency, churn.mrr_after_minor) == ("churn", "EUR", 0)


def test_a_change_stripe_would_bill_in_another_currency_is_refused_before_stripe_is_asked(
    stripe_http: TestClient, admin_headers: dict[str, str], world: StripeWorld, db: Engine
) -> None:
    """An account put in USD but linked to a EUR subscription (its webhooks not in yet): the
    upgrade is a 409 naming both currencies, nothing changes in Stripe, nothing is recorded.
    Fails before: Stripe refused the USD prices (409 billing_rejected), after a preview."""
    sub = euro_subscription(world, "acme")
    world.link(stripe_http, admin_headers, "acme", GROWTH_7, sub)
    entries = len(ledger_rows(db, "acme"))
    refused = upgrade(stripe_http, admin_headers, {"target": {"seats": 9}}, "k1")
    body = assert_problem(refused, 409, "currency_mismatch", "currency")
    assert "EUR" in body["detail"] and "USD" in body["detail"]
    assert world.fake.requests_for("invoices.create_preview") == []
    assert world.fake.requests_for("subscriptions.update") == []
    assert len(ledger_rows(db, "acme")) == entries

    # Its webhooks arrive: the account is billed in EUR, and what the ledger held for it in USD
    # (the PUT's list price) is moved to 0, not left beside the EUR.
    world.deliver(stripe_http)
    assert ledger_mrr(db, "acme", "USD") == 0
    assert ledger_mrr(db, "acme", "EUR") == 9_000 + 2 * 1_400
    moved = ledger_rows(db, "acme")[entries:]
    assert sorted((row.currency, row.source) for row in moved) == [
        ("EUR", "webhook"),
        ("USD", "webhook"),
    ]


# --- point 10: discounts, tax and credit balance -------------------------------------------


def test_a_forever_coupon_lowers_mrr_and_stripes_price_is_confirmed_as_shown(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    acme: dict,
    world: StripeWorld,
    db: Engine,
) -> None:
    """Fails before: the coupon moved no MRR, and the quote had no price_breakdown."""
    sub_id = acme["billing_subscription_id"]
    coupon = world.sdk.v1.coupons.create(params={"percent_off": 20, "duration": "forever"})
    world.sdk.v1.subscriptions.update(sub_id, params={"discounts": [{"coupon": coupon.id}]})
    world.deliver(stripe_http)
    contraction = ledger_rows(db, "acme")[-1]
    assert (contraction.kind, contraction.source) == ("contraction", "webhook")
    assert contraction.mrr_after_minor == 12_900 - 2_580  # 20% off what the customer pays

    quoted = quote(stripe_http, admin_headers)
    assert quoted.status_code == 200, quoted.text
    # The 2 seats were billed in full before the coupon (their credit is what was paid); the
    # 4 seats' remaining half is 3,000 less 20% ("included": the proration is net of it).
    assert quoted.json()["amount_due_now"] == money(-1_500 + 2_400)
    assert quoted.json()["price_breakdown"] == {
        "list_amount": money(1_500),
        "discounts": money(600),
        "tax": money(0),
        "credit_applied": money(0),
        "amount_due": money(900),
    }

    stale = upgrade(
        stripe_http,
        admin_headers,
        {"target": {"seats": 9}, "expected_amount_due_minor": 1_500},
        "k1",
    )
    problem = assert_problem(stale, 409, "quote_changed")
    assert "900" in problem["detail"] and "discounts -6.00 USD" in problem["detail"]
    assert problem["amount_due"] == money(900)  # for the widget to show and confirm
    assert "discounts -6.00 USD" in problem["price_explained"]
    done = upgrade(
        stripe_http, admin_headers, {"target": {"seats": 9}, "expected_amount_due_minor": 900}, "k2"
    )
    assert done.status_code == 200, done.text
    assert done.json()["amount_charged"] == money(900)
    invoice = world.sdk.v1.invoices.retrieve(done.json()["invoice_id"])
    assert invoice.amount_paid == 900
    expansion = ledger_rows(db, "acme")[-1]
    assert (expansion.kind, expansion.mrr_after_minor) == ("expansion", 15_900 - 3_180)
    world.deliver(stripe_http)  # Stripe's own webhooks of the change find nothing to do
    assert ledger_rows(db, "acme")[-1].id == expansion.id
    assert ledger_mrr(db, "acme", "USD") == world.billing().subscription(sub_id).mrr.minor


@pytest.mark.parametrize(
    "coupon",
    [
        {"percent_off": 50, "duration": "once"},
        {"percent_off": 50, "duration": "repeating", "duration_in_months": 3},
        {"amount_off": 1_000, "currency": "usd", "duration": "repeating", "duration_in_months": 2},
    ],
)
def test_a_coupon_that_ends_leaves_mrr_as_it_is(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    acme: dict,
    world: StripeWorld,
    db: Engine,
    coupon: dict[str, Any],
) -> None:
    created = world.sdk.v1.coupons.create(params=coupon)  # type: ignore[arg-type]
    world.sdk.v1.subscriptions.update(
        acme["billing_subscription_id"], params={"discounts": [{"coupon": created.id}]}
    )
    answers = world.deliver(stripe_http)
    assert "customer.subscription.updated" in [a["type"] for a in answers]
    assert [row.kind for row in ledger_rows(db, "acme")] == ["new"]


def test_an_amount_off_forever_coupon_lowers_mrr_by_its_monthly_amount(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    acme: dict,
    world: StripeWorld,
    db: Engine,
) -> None:
    coupon = world.sdk.v1.coupons.create(
        params={"amount_off": 1_000, "currency": "usd", "duration": "forever"}
    )
    world.sdk.v1.subscriptions.update(
        acme["billing_subscription_id"], params={"discounts": [{"coupon": coupon.id}]}
    )
    world.deliver(stripe_http)
    assert ledger_rows(db, "acme")[-1].mrr_after_minor == 12_900 - 1_000
    # Taken off the subscription again: back to the full price.
    world.sdk.v1.subscriptions.update(acme["billing_subscription_id"], params={"discounts": ""})
    world.deliver(stripe_http)
    assert [row.kind for row in ledger_rows(db, "acme")] == ["new", "contraction", "expansion"]
    assert ledger_mrr(db, "acme", "USD") == 12_900


def test_tax_and_credit_balance_explain_the_price_and_an_offer_is_confirmed_at_it(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    acme: dict,
    world: StripeWorld,
    db: Engine,
) -> None:
    """Exclusive tax on top, the customer's credit taken off: the offer (list price) is refused
    with the amount Stripe will charge and why; confirmed at that amount, exactly it is charged.
    Tax is no MRR. Fails before: no price_breakdown, and an offer could never be confirmed at
    Stripe's price (the offers came back at list price, 409 again)."""
    sub_id = acme["billing_subscription_id"]
    rate = world.sdk.v1.tax_rates.create(
        params={"display_name": "VAT", "percentage": 10.0, "inclusive": False}
    )
    world.sdk.v1.subscriptions.update(sub_id, params={"default_tax_rates": [rate.id]})
    world.sdk.v1.customers.update(world.customers["acme"], params={"balance": -500})
    world.deliver(stripe_http)
    assert [row.kind for row in ledger_rows(db, "acme")] == ["new"]  # tax is not MRR

    report_active_seats(stripe_http, admin_headers, 7)
    offer = seat_offer_token(stripe_http, admin_headers)
    # 10 seats: 3 more paid seats for half the period, 2,250 at list price.
    listed = offer["quote"]["amount_due_now"]["amount_minor"]
    assert offer["target"]["seats"] == 10 and listed == 2_250
    refused = upgrade(stripe_http, admin_headers, {"offer_token": offer["offer_token"]}, "k1")
    detail = assert_problem(refused, 409, "quote_changed")["detail"]
    assert "1975" in detail and "tax +2.25 USD" in detail and "credit balance -5.00 USD" in detail

    quoted = quote(stripe_http, admin_headers, seats=10).json()
    assert quoted["price_breakdown"] == {
        "list_amount": money(2_250),
        "discounts": money(0),
        "tax": money(225),  # 10% of each line: -150 on the credit, +375 on the charge
        "credit_applied": money(500),
        "amount_due": money(1_975),
    }
    done = upgrade(
        stripe_http,
        admin_headers,
        {"offer_token": offer["offer_token"], "expected_amount_due_minor": 1_975},
        "k2",
    )
    assert done.status_code == 200, done.text
    assert done.json()["amount_charged"] == money(1_975)
    invoice = world.sdk.v1.invoices.retrieve(done.json()["invoice_id"])
    assert (invoice.total, invoice.amount_paid, invoice.ending_balance) == (2_475, 1_975, 0)
    assert world.fake.customer_balance(world.customers["acme"]) == 0
    entry = ledger_rows(db, "acme")[-1]
    assert (entry.kind, entry.offer_id) == ("expansion", offer["id"])
    assert entry.mrr_after_minor == 9_900 + 5 * 1_500  # list price: tax is not MRR
