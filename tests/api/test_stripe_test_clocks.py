"""Stripe mode with a subscription on a Stripe test clock: the account's billing time is the
clock's frozen time, so the offer, the confirm, the charge and Stripe's invoice all prorate at
the clock's time, not the service's (docs.stripe.com/api/test_clocks/object: "Time at which all
objects belonging to this clock are frozen")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.api.test_upgrades import report_active_seats, seat_offer_token
from tests.stripe_fixtures_app import (
    GROWTH_7,
    StripeWorld,
    assert_books_balance,
    ledger_rows,
    unix,
)

START = datetime(2026, 11, 10, 12, tzinfo=UTC)  # the service clock's start (tests.fakes.clock)
DAY = timedelta(days=1)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
def clocked(
    stripe_http: TestClient, admin_headers: dict[str, str], world: StripeWorld
) -> dict[str, Any]:
    """acme on Growth with 7 seats, its Stripe customer on a test clock frozen when it
    subscribed; Stripe's webhooks put the account on the clock."""
    assert world.clock.now() == START
    clock = world.sdk.v1.test_helpers.test_clocks.create(params={"frozen_time": unix(START)})
    sub = world.subscribe("acme", GROWTH_7, test_clock=clock.id)
    assert sub.test_clock == clock.id
    account = world.link(stripe_http, admin_headers, "acme", GROWTH_7, sub)
    world.deliver(stripe_http)
    return {"clock": clock.id, "subscription": sub.id, **account}


def advance_clock(http: TestClient, world: StripeWorld, clock_id: str, to: datetime) -> None:
    world.sdk.v1.test_helpers.test_clocks.advance(clock_id, params={"frozen_time": unix(to)})
    answers = world.deliver(http)
    [ready] = [a for a in answers if a["type"] == "test_helpers.test_clock.ready"]
    assert ready["status"] == "processed", ready


def test_offer_confirm_charge_and_invoice_prorate_at_the_test_clocks_time(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    clocked: dict[str, Any],
    world: StripeWorld,
    db: Engine,
) -> None:
    frozen = START + 5 * DAY  # the clock: 25 of the period's 30 days are left
    advance_clock(stripe_http, world, clocked["clock"], frozen)
    world.advance(days=15)  # the service (and the rest of Stripe): only 15 days would be left
    report_active_seats(stripe_http, admin_headers, 7)

    offer = seat_offer_token(stripe_http, admin_headers)
    assert offer["target"]["seats"] == 10
    quote = offer["quote"]
    assert quote["proration_date"] == iso(frozen)
    # 5 seats beyond the included 5 at 1,500 a month for 25 of 30 days, less the 2 billed for
    # those days (Stripe's rule, per line, by the second): 6,250 - 2,500.
    assert quote["amount_due_now"]["amount_minor"] == 3_750
    # The offer's token is good for its 15 minutes by the service's clock, not the frozen one.
    assert offer["expires_at"] == iso(world.clock.now() + timedelta(minutes=15))

    done = stripe_http.post(
        "/v1/accounts/acme/upgrades",
        json={"offer_token": offer["offer_token"]},
        headers={**admin_headers, "Idempotency-Key": "clocked-1"},
    )
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["proration_date"] == iso(frozen)
    assert body["amount_charged"]["amount_minor"] == 3_750
    [preview] = world.fake.requests_for("invoices.create_preview")
    assert preview.params["subscription_details"]["proration_date"] == unix(frozen)
    [update] = world.fake.requests_for("subscriptions.update")
    assert update.params["proration_date"] == unix(frozen)
    invoice = world.sdk.v1.invoices.retrieve(body["invoice_id"])
    assert (invoice.amount_paid, invoice.test_clock) == (3_750, clocked["clock"])
    assert {line.period.start for line in invoice.lines.data} == {unix(frozen)}
    assert ledger_rows(db, "acme")[-1].stripe_invoice_id == body["invoice_id"]

    world.deliver(stripe_http)
    assert_books_balance(stripe_http, admin_headers, db, world, "acme", clocked["subscription"])


def test_the_clocks_period_is_quoted_and_charged_after_the_service_clock_left_it(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    clocked: dict[str, Any],
    world: StripeWorld,
    db: Engine,
) -> None:
    """The service's clock is past the period the test clock is still in: the change is still
    quoted and applied in that period (by the service's clock it would be over)."""
    world.advance(days=35)
    quoted = stripe_http.post(
        "/v1/accounts/acme/quotes", json={"target": {"seats": 9}}, headers=admin_headers
    )
    assert quoted.status_code == 200, quoted.text
    quote = quoted.json()
    assert quote["proration_date"] == iso(START)
    assert quote["amount_due_now"]["amount_minor"] == 3_000  # the whole period is left

    done = stripe_http.post(
        "/v1/accounts/acme/upgrades",
        json={"target": {"seats": 9}, "expected_amount_due_minor": 3_000},
        headers={**admin_headers, "Idempotency-Key": "clocked-2"},
    )
    assert done.status_code == 200, done.text
    invoice = world.sdk.v1.invoices.retrieve(done.json()["invoice_id"])
    assert invoice.amount_paid == done.json()["amount_charged"]["amount_minor"] == 3_000

    # The clock reaches the next period: Stripe renews, the account follows the renewal and
    # the clock, and the next quote is priced at the clock's new time.
    renewed_at = START + 33 * DAY
    advance_clock(stripe_http, world, clocked["clock"], renewed_at)
    account = stripe_http.get("/v1/accounts/acme", headers=admin_headers).json()
    assert account["current_period_start"] == iso(START + 30 * DAY)
    assert account["seats"] == 9
    again = stripe_http.post(
        "/v1/accounts/acme/quotes", json={"target": {"seats": 10}}, headers=admin_headers
    )
    assert again.status_code == 200, again.text
    assert again.json()["proration_date"] == iso(renewed_at)
    assert_books_balance(stripe_http, admin_headers, db, world, "acme", clocked["subscription"])


def test_a_subscription_on_no_clock_is_priced_at_the_service_clock(
    stripe_http: TestClient, admin_headers: dict[str, str], world: StripeWorld
) -> None:
    sub = world.subscribe("acme", GROWTH_7)
    assert sub.test_clock is None
    world.link(stripe_http, admin_headers, "acme", GROWTH_7, sub)
    world.deliver(stripe_http)
    world.advance(days=3)
    quoted = stripe_http.post(
        "/v1/accounts/acme/quotes", json={"target": {"seats": 9}}, headers=admin_headers
    ).json()
    assert quoted["proration_date"] == iso(START + 3 * DAY)


def test_a_late_reading_of_the_clock_never_takes_the_account_back(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    clocked: dict[str, Any],
    world: StripeWorld,
) -> None:
    """A test clock only moves forward: its older `ready` event, delivered after a newer one,
    leaves the account at the newer time."""
    world.deliver(stripe_http)
    sdk_clocks = world.sdk.v1.test_helpers.test_clocks
    sdk_clocks.advance(clocked["clock"], params={"frozen_time": unix(START + 2 * DAY)})
    sdk_clocks.advance(clocked["clock"], params={"frozen_time": unix(START + 4 * DAY)})
    first, second = world.fake.events_of_type("test_helpers.test_clock.ready")
    world.deliver(stripe_http, [second, first])

    quoted = stripe_http.post(
        "/v1/accounts/acme/quotes", json={"target": {"seats": 9}}, headers=admin_headers
    )
    assert quoted.json()["proration_date"] == iso(START + 4 * DAY)


def test_linking_another_subscription_leaves_the_old_ones_clock(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    clocked: dict[str, Any],
    world: StripeWorld,
) -> None:
    advance_clock(stripe_http, world, clocked["clock"], START + 2 * DAY)
    world.advance(days=1)
    other = world.subscribe("acme-2", GROWTH_7)
    world.link(stripe_http, admin_headers, "acme", GROWTH_7, other)
    quoted = stripe_http.post(
        "/v1/accounts/acme/quotes", json={"target": {"seats": 9}}, headers=admin_headers
    )
    assert quoted.json()["proration_date"] == iso(START + DAY)
