"""3-D Secure (strong customer authentication) on an upgrade in Stripe mode: the real SDK
against the Stripe double, whose customer pays with a card that "requires authentication on all
transactions" (Stripe's test card 4000 0027 6000 3184).

Stripe keeps such a change as a pending update on an open invoice ("There are two ways to handle
payment failures. These are related to declines and customer authentication":
docs.stripe.com/billing/subscriptions/pending-updates-reference) and applies it once the invoice
is paid. Upshift answers 402 `requires_action` with the hosted invoice page, the customer
confirms there, and the `invoice.paid` webhook settles the upgrade: exactly one ledger entry.
"""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from service.adapters.billing_tables import ScheduledChangeRow
from service.domain.ledger import Source
from tests.api.test_accounts import assert_problem
from tests.api.test_stripe_upgrades import acme, books, upgrade
from tests.api.test_upgrades import report_active_seats, seat_offer_token
from tests.stripe_fixtures_app import StripeWorld, ledger_rows

__all__ = ["acme"]


@pytest.fixture
def authenticating(acme: dict, world: StripeWorld) -> dict:
    world.fake.require_authentication(acme["billing_customer_id"])
    return acme


def test_a_payment_that_needs_authentication_is_settled_once_paid(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    authenticating: dict,
    world: StripeWorld,
    db: Engine,
) -> None:
    sub_id = authenticating["billing_subscription_id"]
    report_active_seats(stripe_http, admin_headers, 7)
    offer = seat_offer_token(stripe_http, admin_headers)
    token = offer["offer_token"]
    waiting = upgrade(stripe_http, admin_headers, {"offer_token": token})
    problem = assert_problem(waiting, 402, "requires_action")
    assert waiting.headers["content-type"] == "application/problem+json"
    assert problem["amount_due"] == offer["quote"]["amount_due_now"]
    assert problem["amount_due"]["amount_minor"] > 0
    assert problem["hosted_invoice_url"].startswith(world.fake.base_url + "/hosted/invoices/in_")
    assert problem["expires_at"] is not None
    # Nothing is charged or changed yet: Stripe keeps the change pending, Upshift the account.
    invoice = world.sdk.v1.invoices.retrieve(problem["invoice_id"])
    assert (invoice.status, invoice.amount_paid) == ("open", 0)
    assert world.quantities(sub_id)["relay_growth_seat_month"] == 2
    account = stripe_http.get("/v1/accounts/acme", headers=admin_headers).json()
    assert account["seats"] == 7
    assert len(ledger_rows(db, "acme")) == 1
    # A retry of the same click says the same while the customer has not confirmed.
    again = upgrade(stripe_http, admin_headers, {"offer_token": token})
    assert again.status_code == 402 and again.json() == problem
    assert again.headers["Idempotent-Replayed"] == "true"
    world.deliver(stripe_http)  # invoice.payment_action_required: nothing to settle yet
    assert len(ledger_rows(db, "acme")) == 1

    # The customer confirms on the hosted invoice page (the double's 3-D Secure buttons).
    page = httpx.get(problem["hosted_invoice_url"])
    assert page.status_code == 200 and "Complete authentication" in page.text
    done = httpx.post(problem["hosted_invoice_url"] + "/complete", follow_redirects=True)
    assert done.status_code == 200 and "Status: paid" in done.text
    assert world.quantities(sub_id)["relay_growth_seat_month"] > 2

    answers = world.deliver(stripe_http)
    assert any("paid and applied" in (a.get("detail") or "") for a in answers), answers
    rows = ledger_rows(db, "acme")
    assert len(rows) == 2
    assert rows[-1].source == Source.SELF_SERVE_OFFER.value
    assert rows[-1].stripe_invoice_id == problem["invoice_id"]
    settled = upgrade(stripe_http, admin_headers, {"offer_token": token})
    assert settled.status_code == 200, settled.text
    body = settled.json()
    assert (body["status"], body["invoice_id"]) == ("applied", problem["invoice_id"])
    assert body["amount_charged"] == problem["amount_due"]
    assert body["ledger_entry_id"] == rows[-1].id
    assert rows[-1].offer_id == offer["id"]
    seats = stripe_http.get("/v1/accounts/acme", headers=admin_headers).json()["seats"]
    assert seats == offer["target"]["seats"]
    world.deliver(stripe_http)  # redeliveries and later events write nothing more
    assert len(ledger_rows(db, "acme")) == 2
    books(stripe_http, admin_headers, db, world, authenticating)


def test_an_abandoned_authentication_expires_without_a_charge(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    authenticating: dict,
    world: StripeWorld,
    db: Engine,
) -> None:
    waiting = upgrade(stripe_http, admin_headers, {"target": {"seats": 9}})
    problem = assert_problem(waiting, 402, "requires_action")
    failed = httpx.post(problem["hosted_invoice_url"] + "/fail", follow_redirects=True)
    assert failed.status_code == 200  # a failed authentication leaves the invoice open
    world.deliver(stripe_http)
    assert assert_problem(
        upgrade(stripe_http, admin_headers, {"target": {"seats": 9}}), 402, "requires_action"
    )
    world.advance(hours=24)  # Stripe drops a pending update after 23 hours, voiding its invoice
    world.deliver(stripe_http)
    expired = upgrade(stripe_http, admin_headers, {"target": {"seats": 9}})
    assert_problem(expired, 402, "payment_not_completed")
    invoice = world.sdk.v1.invoices.retrieve(problem["invoice_id"])
    assert invoice.status == "void"
    account = stripe_http.get("/v1/accounts/acme", headers=admin_headers).json()
    assert account["seats"] == 7
    assert len(ledger_rows(db, "acme")) == 1
    books(stripe_http, admin_headers, db, world, authenticating)


def test_events_arriving_before_invoice_paid_still_credit_the_offer(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    authenticating: dict,
    world: StripeWorld,
    db: Engine,
) -> None:
    """Stripe does not promise an order: the subscription's update may come before the
    invoice's payment. The upgrade is settled by whichever comes first, attributed to it."""
    problem = assert_problem(
        upgrade(stripe_http, admin_headers, {"target": {"seats": 9}}), 402, "requires_action"
    )
    world.deliver(stripe_http)
    before = len(world.fake.events)
    world.fake.complete_authentication(problem["invoice_id"])
    new = world.fake.events[before:]
    assert "invoice.paid" in [e["type"] for e in new]
    subscription_first = sorted(new, key=lambda e: not e["type"].startswith("customer.sub"))
    answers = world.deliver(stripe_http, subscription_first)
    assert "paid and applied" in answers[0]["detail"], answers
    rows = ledger_rows(db, "acme")
    assert len(rows) == 2 and rows[-1].source == Source.API.value
    assert upgrade(stripe_http, admin_headers, {"target": {"seats": 9}}).status_code == 200
    world.deliver(stripe_http)
    assert len(ledger_rows(db, "acme")) == 2


def test_an_upgrade_waiting_for_authentication_replaces_a_scheduled_downgrade(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    authenticating: dict,
    world: StripeWorld,
    db: Engine,
) -> None:
    """The customer scheduled a downgrade, then chose to upgrade now: the downgrade is dropped on
    both sides at once, so Stripe's schedule cannot apply it at the period end."""
    downgrade = upgrade(stripe_http, admin_headers, {"target": {"tier": "starter", "seats": 5}})
    assert downgrade.json()["status"] == "scheduled", downgrade.text
    sub_id = authenticating["billing_subscription_id"]
    schedule_id = world.subscription(sub_id).schedule
    problem = assert_problem(
        upgrade(stripe_http, admin_headers, {"target": {"seats": 9}}, "k2"), 402, "requires_action"
    )
    assert world.subscription(sub_id).schedule is None
    assert world.sdk.v1.subscription_schedules.retrieve(schedule_id).status == "released"
    with Session(db) as session:
        assert session.scalars(select(ScheduledChangeRow.status)).one() == "canceled"
    world.fake.complete_authentication(problem["invoice_id"])
    world.deliver(stripe_http)
    world.advance(days=16)  # past the period end: the downgrade does not happen
    world.deliver(stripe_http)
    account = stripe_http.get("/v1/accounts/acme", headers=admin_headers).json()
    assert (account["tier"], account["seats"]) == ("growth", 9)
    books(stripe_http, admin_headers, db, world, authenticating)


def test_a_discounted_subscription_settles_at_the_mrr_stripe_bills_after_the_payment(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    authenticating: dict,
    world: StripeWorld,
    db: Engine,
) -> None:
    """The entry written when the customer pays is at the MRR of the subscription as Stripe
    bills it then (20% off forever), not at the one it billed while the change was pending."""
    sub_id = authenticating["billing_subscription_id"]
    coupon = world.sdk.v1.coupons.create(params={"percent_off": 20, "duration": "forever"})
    world.sdk.v1.subscriptions.update(sub_id, params={"discounts": [{"coupon": coupon.id}]})
    world.deliver(stripe_http)
    body = {"target": {"seats": 9}, "expected_amount_due_minor": 900}
    problem = assert_problem(upgrade(stripe_http, admin_headers, body), 402, "requires_action")
    assert problem["amount_due"]["amount_minor"] == 900
    world.fake.complete_authentication(problem["invoice_id"])
    world.deliver(stripe_http)
    entry = ledger_rows(db, "acme")[-1]
    assert (entry.kind, entry.mrr_after_minor) == ("expansion", 15_900 - 3_180)
    settled = upgrade(stripe_http, admin_headers, body)
    assert settled.json()["amount_charged"]["amount_minor"] == 900
    world.deliver(stripe_http)
    assert ledger_rows(db, "acme")[-1].id == entry.id
    books_total = sum(row.mrr_delta_minor for row in ledger_rows(db, "acme"))
    assert books_total == world.billing().subscription(sub_id).mrr.minor
