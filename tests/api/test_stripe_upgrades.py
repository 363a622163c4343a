"""POST /v1/accounts/{id}/upgrades with billing_backend=stripe: the real SDK against the fake
Stripe, accounts linked to a customer and subscription made through the SDK."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import pytest
import stripe
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from service.adapters.billing_tables import ScheduledChangeRow, WebhookEventRow
from service.adapters.catalog_loader import load_catalog
from service.adapters.stripe_api import STRIPE_API_VERSION, StripeNotConfigured
from service.adapters.stripe_setup import StripeCatalogStore
from service.api.app import create_app
from service.domain.accounts import Plan
from service.domain.catalog import Interval
from service.ports import SystemClock
from service.services.stripe_sync import sync_stripe
from service.settings import Settings
from tests.api.test_accounts import assert_problem
from tests.api.test_upgrades import report_active_seats, seat_offer_token
from tests.conftest import CATALOG_PATH
from tests.fakes.clock import FakeClock
from tests.stripe_fixtures_app import (
    GROWTH_7,
    StripeWorld,
    assert_books_balance,
    ledger_rows,
)


@pytest.fixture
def acme(
    stripe_http: TestClient, admin_headers: dict[str, str], world: StripeWorld
) -> dict[str, Any]:
    sub = world.subscribe("acme", GROWTH_7)
    account = world.link(stripe_http, admin_headers, "acme", GROWTH_7, sub)
    world.advance(days=15)  # half of the 30-day period left
    return account


def upgrade(http: Any, headers: dict[str, str], body: dict, key: str = "k1", acc: str = "acme"):
    return http.post(
        f"/v1/accounts/{acc}/upgrades", json=body, headers={**headers, "Idempotency-Key": key}
    )


def books(http: TestClient, headers: dict[str, str], db: Engine, world: StripeWorld, acme: dict):
    assert_books_balance(http, headers, db, world, "acme", acme["billing_subscription_id"])


def test_explicit_target_is_applied_by_stripe_once(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    acme: dict,
    world: StripeWorld,
    db: Engine,
) -> None:
    sub_id = acme["billing_subscription_id"]
    quoted = stripe_http.post(
        "/v1/accounts/acme/quotes", json={"target": {"seats": 9}}, headers=admin_headers
    )
    assert quoted.status_code == 200, quoted.text
    assert world.fake.requests_for("invoices.create_preview")  # Stripe is the price authority

    first = upgrade(stripe_http, admin_headers, {"target": {"seats": 9}})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["status"] == "applied"
    assert body["amount_charged"] == {"amount_minor": 1_500, "currency": "USD"}
    assert body["invoice_id"].startswith("in_")
    invoice = world.sdk.v1.invoices.retrieve(body["invoice_id"])
    assert (invoice.status, invoice.amount_paid) == ("paid", 1_500)
    assert world.quantities(sub_id)["relay_growth_seat_month"] == 4
    [update] = world.fake.requests_for("subscriptions.update")
    assert update.idempotency_key == f"upshift:upgrade:{body['upgrade_id']}"
    assert update.params["proration_date"] == int(world.clock.now().timestamp())

    again = upgrade(stripe_http, admin_headers, {"target": {"seats": 9}})
    assert again.json() == body and again.headers["idempotent-replayed"] == "true"
    assert world.fake.update_count(sub_id) == 1
    entry = ledger_rows(db, "acme")[-1]
    assert (entry.kind, entry.engine, entry.mrr_delta_minor) == ("expansion", "seat", 3_000)
    assert (entry.stripe_invoice_id, entry.stripe_subscription_id) == (body["invoice_id"], sub_id)

    # Stripe's own webhooks for that change find the account already there: nothing to write.
    answers = world.deliver(stripe_http)
    assert {a["status"] for a in answers} <= {"processed", "ignored"}
    assert len(ledger_rows(db, "acme")) == 2
    books(stripe_http, admin_headers, db, world, acme)


def test_offer_token_upgrade(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    acme: dict,
    world: StripeWorld,
    db: Engine,
) -> None:
    report_active_seats(stripe_http, admin_headers, 7)
    offer = seat_offer_token(stripe_http, admin_headers)
    # Page loads are priced by the local engine: they never wait on Stripe or spend its limits.
    assert world.fake.requests_for("invoices.create_preview") == []
    done = upgrade(stripe_http, admin_headers, {"offer_token": offer["offer_token"]})
    assert world.fake.requests_for("invoices.create_preview")  # confirm asks Stripe's price
    assert done.status_code == 200, done.text
    charged = done.json()["amount_charged"]["amount_minor"]
    assert charged == offer["quote"]["amount_due_now"]["amount_minor"] > 0
    remote = world.billing().subscription(acme["billing_subscription_id"])
    assert remote.plan == Plan(
        "growth", Interval.month, offer["target"]["seats"], {}, acme["catalog_version"]
    )
    entry = ledger_rows(db, "acme")[-1]
    assert (entry.source, entry.offer_id) == ("self_serve_offer", offer["id"])
    books(stripe_http, admin_headers, db, world, acme)


def test_tier_upgrade_moves_the_subscription(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    acme: dict,
    world: StripeWorld,
    db: Engine,
) -> None:
    quoted = stripe_http.post(
        "/v1/accounts/acme/quotes", json={"target": {"tier": "business"}}, headers=admin_headers
    ).json()
    done = upgrade(
        stripe_http,
        admin_headers,
        {
            "target": {"tier": "business"},
            "expected_amount_due_minor": quoted["amount_due_now"]["amount_minor"],
        },
    )
    assert done.status_code == 200, done.text
    remote = world.billing().subscription(acme["billing_subscription_id"])
    assert remote.plan == Plan("business", Interval.month, 10, {}, acme["catalog_version"])
    account = stripe_http.get("/v1/accounts/acme", headers=admin_headers).json()
    assert (account["tier"], account["seats"]) == ("business", 10)
    assert ledger_rows(db, "acme")[-1].engine == "upsell"
    books(stripe_http, admin_headers, db, world, acme)


def test_addon_upgrade_adds_an_item(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    acme: dict,
    world: StripeWorld,
    db: Engine,
) -> None:
    done = upgrade(stripe_http, admin_headers, {"target": {"addons": {"api_pack": 2}}})
    assert done.status_code == 200, done.text
    assert world.quantities(acme["billing_subscription_id"])["relay_api_pack_month"] == 2
    assert ledger_rows(db, "acme")[-1].engine == "addon"
    books(stripe_http, admin_headers, db, world, acme)


def test_downgrade_is_scheduled_in_stripe_and_synced_at_the_period_end(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    acme: dict,
    world: StripeWorld,
    db: Engine,
) -> None:
    response = upgrade(stripe_http, admin_headers, {"target": {"tier": "starter", "seats": 5}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["effective_at"]) == ("scheduled", "2026-12-10T12:00:00Z")
    sub_id = acme["billing_subscription_id"]
    schedule_id = world.subscription(sub_id).schedule
    assert schedule_id is not None
    with Session(db) as session:
        row = session.scalars(select(ScheduledChangeRow)).one()
        assert (row.external_id, row.status) == (schedule_id, "pending")
    assert len(ledger_rows(db, "acme")) == 1  # nothing moved yet

    world.advance(days=15)  # the period end: Stripe switches the items, then renews
    world.deliver(stripe_http)
    account = stripe_http.get("/v1/accounts/acme", headers=admin_headers).json()
    assert (account["tier"], account["seats"]) == ("starter", 5)
    assert account["current_period_start"] == "2026-12-10T12:00:00Z"
    entry = ledger_rows(db, "acme")[-1]
    assert (entry.kind, entry.source) == ("contraction", "webhook")
    with Session(db) as session:
        assert session.scalars(select(ScheduledChangeRow.status)).one() == "applied"
    books(stripe_http, admin_headers, db, world, acme)


def test_declined_payment_changes_nothing(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    acme: dict,
    world: StripeWorld,
    db: Engine,
) -> None:
    sub_id = acme["billing_subscription_id"]
    world.fake.fail_next(sub_id, "card_declined")
    declined = upgrade(stripe_http, admin_headers, {"target": {"seats": 9}})
    assert_problem(declined, 402, "payment_failed")
    account = stripe_http.get("/v1/accounts/acme", headers=admin_headers).json()
    assert (account["seats"], account["version"]) == (7, 1)
    assert world.quantities(sub_id)["relay_growth_seat_month"] == 2
    assert len(ledger_rows(db, "acme")) == 1

    world.fake.pending_update_raises = True
    world.fake.fail_next(sub_id, "card_declined")
    card = assert_problem(
        upgrade(stripe_http, admin_headers, {"target": {"seats": 9}}, "k2"), 402, "card_declined"
    )
    assert card["detail"] == "Your card was declined."

    # A working card and a new key: applied (the earlier pending update is superseded).
    world.fake.pending_update_raises = False
    assert upgrade(stripe_http, admin_headers, {"target": {"seats": 9}}, "k3").status_code == 200
    assert world.quantities(sub_id)["relay_growth_seat_month"] == 4
    world.deliver(stripe_http)
    books(stripe_http, admin_headers, db, world, acme)


def test_an_account_without_a_subscription_cannot_upgrade(
    stripe_http: TestClient, admin_headers: dict[str, str], world: StripeWorld
) -> None:
    stripe_http.put("/v1/accounts/solo", json={"tier": "growth", "seats": 7}, headers=admin_headers)
    world.advance(days=1)
    response = upgrade(stripe_http, admin_headers, {"target": {"seats": 9}}, acc="solo")
    assert_problem(response, 409, "account_not_linked")


def test_stripe_mode_needs_a_secret_key(database_url: str, clock: FakeClock) -> None:
    settings = Settings(
        database_url=database_url, catalog_path=CATALOG_PATH, billing_backend="stripe"
    )
    with pytest.raises(StripeNotConfigured, match="UPSHIFT_STRIPE_SECRET_KEY is required"):
        create_app(settings, clock=clock)


LIVE_KEY = os.environ.get("UPSHIFT_STRIPE_TEST_KEY")


@pytest.mark.stripe_live
@pytest.mark.skipif(not LIVE_KEY, reason="set UPSHIFT_STRIPE_TEST_KEY (an sk_test_ key) to run")
def test_upgrade_flow_against_stripe_test_mode(
    db: Engine, database_url: str, admin_headers: dict[str, str]
) -> None:
    """The same flow against real Stripe test mode: sync, subscribe, upgrade, check, an upgrade
    whose payment needs 3-D Secure settled once paid, cancel."""
    assert LIVE_KEY is not None and LIVE_KEY.startswith("sk_test_"), "test-mode keys only"
    catalog = load_catalog(CATALOG_PATH)
    sdk = stripe.StripeClient(LIVE_KEY, stripe_version=STRIPE_API_VERSION, max_network_retries=2)
    sync_stripe(StripeCatalogStore(sdk), catalog, apply=True)
    customer = sdk.v1.customers.create(
        params={
            "name": "Upshift live test",
            "payment_method": "pm_card_visa",
            "invoice_settings": {"default_payment_method": "pm_card_visa"},
        }
    )
    keys = ["relay_growth_base_month", "relay_growth_seat_month"]
    prices = {p.lookup_key: p.id for p in sdk.v1.prices.list(params={"lookup_keys": keys}).data}
    sub = sdk.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [
                {"price": prices["relay_growth_base_month"], "quantity": 1},
                {"price": prices["relay_growth_seat_month"], "quantity": 2},
            ],
        }
    )
    try:
        settings = Settings(
            database_url=database_url,
            catalog_path=CATALOG_PATH,
            token_secret=SecretStr("live"),
            billing_backend="stripe",
            stripe_secret_key=SecretStr(LIVE_KEY),
        )
        app = create_app(settings, clock=SystemClock(), engine=db)
        item = sub["items"].data[0]
        account = {
            "tier": "growth",
            "seats": 7,
            "current_period_start": datetime.fromtimestamp(
                item.current_period_start, UTC
            ).isoformat(),
            "current_period_end": datetime.fromtimestamp(item.current_period_end, UTC).isoformat(),
            "billing_customer_id": customer.id,
            "billing_subscription_id": sub.id,
        }
        with TestClient(app) as http:
            put = http.put("/v1/accounts/live", json=account, headers=admin_headers)
            assert put.status_code == 201, put.text
            done = upgrade(http, admin_headers, {"target": {"seats": 9}}, acc="live")
            assert done.status_code == 200, done.text
            items = sdk.v1.subscriptions.retrieve(sub.id)["items"].data
            seats = {i.price.lookup_key: i.quantity for i in items}
            assert seats["relay_growth_seat_month"] == 4
            invoice = sdk.v1.invoices.retrieve(done.json()["invoice_id"])
            assert invoice.amount_paid == done.json()["amount_charged"]["amount_minor"]

            # 3-D Secure: the customer's card now needs authentication on every payment (test
            # card 4000 0027 6000 3184, docs.stripe.com/testing#regulatory-cards).
            sca = sdk.v1.payment_methods.attach(
                "pm_card_authenticationRequired", params={"customer": customer.id}
            )
            sdk.v1.customers.update(
                customer.id, params={"invoice_settings": {"default_payment_method": sca.id}}
            )
            waiting = upgrade(http, admin_headers, {"target": {"seats": 11}}, "k2", acc="live")
            problem = assert_problem(waiting, 402, "requires_action")
            assert problem["hosted_invoice_url"].startswith("https://invoice.stripe.com/")
            assert sdk.v1.invoices.retrieve(problem["invoice_id"]).status == "open"
            assert sdk.v1.subscriptions.retrieve(sub.id).pending_update is not None
            # The customer completes the payment on the hosted page; a test cannot pass the
            # bank's challenge, so it pays the open invoice with a card that needs none.
            visa = sdk.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
            sdk.v1.invoices.pay(problem["invoice_id"], params={"payment_method": visa.id})
            settled = upgrade(http, admin_headers, {"target": {"seats": 11}}, "k2", acc="live")
            assert settled.status_code == 200, settled.text
            assert settled.json()["amount_charged"] == problem["amount_due"]
            items = sdk.v1.subscriptions.retrieve(sub.id)["items"].data
            seats = {i.price.lookup_key: i.quantity for i in items}
            assert seats["relay_growth_seat_month"] == 6
    finally:
        sdk.v1.subscriptions.cancel(sub.id)


def test_offers_show_while_stripe_is_down_and_confirm_answers_503_with_retry_after(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    acme: dict,
    world: StripeWorld,
    db: Engine,
) -> None:
    report_active_seats(stripe_http, admin_headers, 7)
    sent_before = len(world.fake.requests)
    for operation in ("invoices.create_preview", "subscriptions.retrieve"):
        world.fake.fail_next(operation, "503_before_apply", times=20)
    offers = stripe_http.get("/v1/accounts/acme/upgrade-offers", headers=admin_headers)
    assert offers.status_code == 200, offers.text
    [seat] = [o for o in offers.json()["offers"] if o["engine"] == "seat"]
    assert seat["quote"]["amount_due_now"]["amount_minor"] > 0
    assert len(world.fake.requests) == sent_before  # the page load sent Stripe nothing
    refused = upgrade(stripe_http, admin_headers, {"offer_token": seat["offer_token"]})
    assert refused.status_code == 503, refused.text
    assert int(refused.headers["Retry-After"]) > 0
    assert len(ledger_rows(db, "acme")) == 1  # nothing booked
    metrics = stripe_http.get("/metrics").text
    assert 'upshift_problems_total{code="billing_unavailable"} 1.0' in metrics


@pytest.mark.parametrize("ended_by", ["release", "cancel"])
def test_a_scheduled_downgrade_ended_in_stripe_is_no_longer_pending(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    acme: dict,
    world: StripeWorld,
    db: Engine,
    ended_by: str,
) -> None:
    """The customer takes the downgrade back in the Customer Portal (the schedule is released)
    or support cancels the schedule (which cancels the subscription too: Stripe's
    subscription_schedules/cancel). Either way the change Upshift scheduled must not stay
    pending forever."""
    scheduled = upgrade(stripe_http, admin_headers, {"target": {"tier": "starter", "seats": 5}})
    assert scheduled.json()["status"] == "scheduled", scheduled.text
    sub_id = acme["billing_subscription_id"]
    schedule_id = world.subscription(sub_id).schedule
    schedules = world.sdk.v1.subscription_schedules
    if ended_by == "release":
        schedules.release(schedule_id)
    else:
        schedules.cancel(schedule_id)
    world.deliver(stripe_http)
    with Session(db) as session:
        assert session.scalars(select(ScheduledChangeRow.status)).one() == "canceled"
    account = stripe_http.get("/v1/accounts/acme", headers=admin_headers).json()
    if ended_by == "release":
        # The period ends on the plan the customer kept; nothing moves.
        world.advance(days=15)
        world.deliver(stripe_http)
        account = stripe_http.get("/v1/accounts/acme", headers=admin_headers).json()
        assert (account["tier"], account["seats"], account["status"]) == ("growth", 7, "active")
        assert [row.kind for row in ledger_rows(db, "acme")] == ["new"]
    else:
        assert account["status"] == "canceled"
        assert [row.kind for row in ledger_rows(db, "acme")] == ["new", "churn"]
    books(stripe_http, admin_headers, db, world, acme)


def test_a_switch_to_a_price_the_catalog_does_not_sell_does_not_jam_the_inbox(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    acme: dict,
    world: StripeWorld,
    db: Engine,
) -> None:
    """Done in the Dashboard: the subscription moves to a custom price. No retry can map it, so
    the event is handled (ignored, with the reason) rather than retried for three days."""
    sub_id = acme["billing_subscription_id"]
    product = world.sdk.v1.products.create(params={"name": "Custom deal"})
    custom = world.sdk.v1.prices.create(
        params={
            "product": product.id,
            "unit_amount": 50_000,
            "currency": "usd",
            "recurring": {"interval": "month"},
        }
    )
    items = world.subscription(sub_id)["items"].data
    world.sdk.v1.subscriptions.update(
        sub_id,
        params={
            "items": [{"id": item.id, "deleted": True} for item in items]
            + [{"price": custom.id, "quantity": 1}],
            "proration_behavior": "none",
        },
    )
    answers = world.deliver(stripe_http)  # each answered 200, none left for a retry
    assert any("catalog" in (a.get("detail") or "") for a in answers), answers
    with Session(db) as session:
        events = session.scalars(select(WebhookEventRow)).all()
        assert all(event.handled_at is not None for event in events)
    account = stripe_http.get("/v1/accounts/acme", headers=admin_headers).json()
    assert (account["tier"], account["seats"]) == ("growth", 7)  # left as it was


def test_scheduling_a_downgrade_keeps_the_phases_coupon_tax_and_metadata(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    acme: dict,
    world: StripeWorld,
) -> None:
    """Support gave the customer a coupon and turned on Stripe Tax on the subscription's
    schedule (Dashboard). Stripe replaces phases whole on an update, so the downgrade Upshift
    schedules must send them again, for this phase and the next."""
    sub_id = acme["billing_subscription_id"]
    schedules = world.sdk.v1.subscription_schedules
    schedule = schedules.create(params={"from_subscription": sub_id})
    phase = schedule.phases[0]
    schedules.update(
        schedule.id,
        params={
            "phases": [
                {
                    "start_date": phase.start_date,
                    "end_date": phase.end_date,
                    "items": [
                        {"price": item.price, "quantity": item.quantity} for item in phase["items"]
                    ],
                    "discounts": [{"coupon": "loyal-20"}],
                    "automatic_tax": {"enabled": True},
                    "metadata": {"deal": "renewal-2026"},
                }
            ]
        },
    )
    scheduled = upgrade(stripe_http, admin_headers, {"target": {"tier": "starter", "seats": 5}})
    assert scheduled.json()["status"] == "scheduled", scheduled.text
    phases = schedules.retrieve(schedule.id).phases
    assert len(phases) == 2
    for kept in phases:
        assert [d.coupon for d in kept.discounts] == ["loyal-20"]
        assert kept.automatic_tax.enabled is True
        assert kept.metadata.to_dict() == {"deal": "renewal-2026"}
    assert {item.price for item in phases[1]["items"]} == {
        world.price_id("relay_starter_base_month"),
        world.price_id("relay_starter_seat_month"),
    }
