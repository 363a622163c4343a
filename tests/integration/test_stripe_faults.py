"""Stripe failing under an upgrade, through the app: every upgrade is applied once or not at all,
and afterwards Σ ledger deltas == the account's MRR == Stripe's MRR.

Written for PostgreSQL (row locks, truly concurrent transactions: run the suite with
UPSHIFT_TEST_DATABASE_URL); they pass on SQLite too, where transactions take turns."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.api.test_accounts import assert_problem
from tests.api.test_upgrades import report_active_seats, seat_offer_token
from tests.live_server import live_server
from tests.stripe_fixtures_app import (
    GROWTH_7,
    StripeWorld,
    assert_books_balance,
    ledger_rows,
)


@pytest.fixture
def acme(
    stripe_http: TestClient, admin_headers: dict[str, str], world: StripeWorld, db: Engine
) -> Iterator[dict[str, Any]]:
    sub = world.subscribe("acme", GROWTH_7)
    account = world.link(stripe_http, admin_headers, "acme", GROWTH_7, sub)
    world.advance(days=15)
    yield account
    # Whatever happened, the books agree with each other and with Stripe.
    world.deliver(stripe_http)
    assert_books_balance(stripe_http, admin_headers, db, world, "acme", sub.id)


def upgrade(http: Any, headers: dict[str, str], body: dict, key: str = "k1") -> Any:
    return http.post(
        "/v1/accounts/acme/upgrades", json=body, headers={**headers, "Idempotency-Key": key}
    )


def expansions(db: Engine) -> list[Any]:
    return [row for row in ledger_rows(db, "acme") if row.kind == "expansion"]


def test_a_timeout_after_stripe_applied_is_retried_with_the_same_key(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    acme: dict,
    world: StripeWorld,
    db: Engine,
) -> None:
    sub_id = acme["billing_subscription_id"]
    world.fake.fail_next("subscriptions.update", "timeout_after_apply")
    response = upgrade(stripe_http, admin_headers, {"target": {"seats": 9}})
    assert response.status_code == 200, response.text
    calls = world.fake.requests_for("subscriptions.update")
    assert [(c.fault, c.replayed) for c in calls] == [("timeout_after_apply", False), (None, True)]
    assert (
        calls[0].idempotency_key
        == calls[1].idempotency_key
        == (f"upshift:upgrade:{response.json()['upgrade_id']}")
    )
    assert world.fake.update_count(sub_id) == 1
    assert len(expansions(db)) == 1


def test_an_answer_lost_for_good_is_neither_lost_nor_applied_twice(
    stripe_http: TestClient,
    stripe_app: FastAPI,
    admin_headers: dict[str, str],
    acme: dict,
    world: StripeWorld,
    db: Engine,
) -> None:
    sub_id = acme["billing_subscription_id"]
    # No SDK retries this once: Stripe applies the change, the answer never arrives.
    patient = stripe_app.state.stripe.client
    stripe_app.state.stripe.client = world.fake.client(max_network_retries=0)
    world.fake.fail_next("subscriptions.update", "timeout_after_apply")
    lost = upgrade(stripe_http, admin_headers, {"target": {"seats": 9}})
    stripe_app.state.stripe.client = patient
    body = assert_problem(lost, 503, "billing_unavailable")
    assert int(lost.headers["Retry-After"]) > 0
    assert "retry" in body["detail"]
    assert world.fake.update_count(sub_id) == 1
    assert expansions(db) == []  # our side rolled back, Stripe has it

    retried = upgrade(stripe_http, admin_headers, {"target": {"seats": 9}})
    assert retried.status_code == 200, retried.text
    assert retried.json()["amount_charged"]["amount_minor"] == 1_500
    assert world.fake.update_count(sub_id) == 1  # recognised, not sent again
    assert len(expansions(db)) == 1
    assert stripe_http.get("/v1/accounts/acme", headers=admin_headers).json()["seats"] == 9


def test_a_5xx_before_applying_is_503_and_changes_nothing(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    acme: dict,
    world: StripeWorld,
    db: Engine,
) -> None:
    sub_id = acme["billing_subscription_id"]
    world.fake.fail_next("subscriptions.update", "5xx_before_apply", times=2)
    down = upgrade(stripe_http, admin_headers, {"target": {"seats": 9}})
    assert_problem(down, 503, "billing_unavailable")
    assert down.headers["Retry-After"] == "5"
    assert world.fake.update_count(sub_id) == 0
    assert expansions(db) == []
    assert stripe_http.get("/v1/accounts/acme", headers=admin_headers).json()["version"] == 1

    # The client retries under the same Idempotency-Key. Stripe answers its key with the saved
    # 500 for a day (docs.stripe.com/api/idempotent_requests); the change had not landed, so
    # Upshift tries once more under a new attempt key, and it goes through, once.
    retried = upgrade(stripe_http, admin_headers, {"target": {"seats": 9}})
    assert retried.status_code == 200, retried.text
    calls = world.fake.requests_for("subscriptions.update")
    assert [(call.status, call.replayed) for call in calls] == [
        (500, False),
        (500, False),
        (500, True),
        (200, False),
    ]
    assert len({call.idempotency_key for call in calls}) == 3
    assert world.fake.update_count(sub_id) == 1
    assert len(expansions(db)) == 1


def test_a_rate_limited_change_is_a_counted_503_and_the_retry_goes_through(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    acme: dict,
    world: StripeWorld,
    db: Engine,
) -> None:
    """A 429 is never swallowed: the customer is told to come back (503 + Retry-After, its own
    code), /metrics counts it, nothing changed; Stripe saved nothing under the key, so the
    retry under the same Idempotency-Key is simply sent again."""
    sub_id = acme["billing_subscription_id"]
    world.fake.fail_next("subscriptions.update", "429_rate_limited")
    limited = upgrade(stripe_http, admin_headers, {"target": {"seats": 9}})
    assert_problem(limited, 503, "stripe_rate_limited")
    assert limited.headers["Retry-After"] == "5"
    assert world.fake.update_count(sub_id) == 0 and expansions(db) == []
    metrics = stripe_http.get("/metrics").text
    assert 'upshift_problems_total{code="stripe_rate_limited"} 1.0' in metrics
    assert [call.status for call in world.fake.requests_for("subscriptions.update")] == [429]

    assert upgrade(stripe_http, admin_headers, {"target": {"seats": 9}}).status_code == 200
    assert world.fake.update_count(sub_id) == 1
    assert len(expansions(db)) == 1


def test_a_declined_card_is_402_and_changes_nothing(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    acme: dict,
    world: StripeWorld,
    db: Engine,
) -> None:
    sub_id = acme["billing_subscription_id"]
    world.fake.pending_update_raises = True
    world.fake.fail_next(sub_id, "card_declined")
    declined = upgrade(stripe_http, admin_headers, {"target": {"seats": 9}})
    assert_problem(declined, 402, "card_declined")
    assert world.fake.update_count(sub_id) == 0
    assert world.quantities(sub_id)["relay_growth_seat_month"] == 2
    assert expansions(db) == []
    state = stripe_http.get("/v1/accounts/acme", headers=admin_headers).json()
    assert (state["seats"], state["version"]) == (7, 1)


@pytest.mark.parametrize("same_key", [True, False], ids=["same-key", "different-keys"])
def test_fifty_concurrent_posts_of_one_offer_change_stripe_once(
    stripe_app: FastAPI,
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    acme: dict,
    world: StripeWorld,
    db: Engine,
    same_key: bool,
) -> None:
    report_active_seats(stripe_http, admin_headers, 7)
    token = seat_offer_token(stripe_http, admin_headers)["offer_token"]
    with live_server(stripe_app) as base_url, httpx.Client(base_url=base_url, timeout=60) as http:

        def post(index: int) -> httpx.Response:
            key = "same" if same_key else f"key-{index}"
            return upgrade(http, admin_headers, {"offer_token": token}, key=key)

        with ThreadPoolExecutor(max_workers=50) as pool:
            responses = list(pool.map(post, range(50)))
    statuses = sorted(r.status_code for r in responses)
    if same_key:
        assert statuses == [200] * 50
        assert len({r.json()["upgrade_id"] for r in responses}) == 1
    else:
        assert statuses.count(200) == 1 and statuses.count(409) == 49, statuses
    assert world.fake.update_count(acme["billing_subscription_id"]) == 1
    assert len(world.fake.requests_for("subscriptions.update")) == 1
    assert len(expansions(db)) == 1


def test_stripes_retry_after_is_followed_within_bounds() -> None:
    import stripe

    from service.adapters.stripe_api import _retry_after

    def limited(headers: dict[str, str] | None) -> stripe.RateLimitError:
        return stripe.RateLimitError("slow down", headers=headers)

    assert _retry_after(limited({"Retry-After": "12"})) == 12
    assert _retry_after(limited({"Retry-After": "3600"})) == 300  # never sends a client away long
    assert _retry_after(limited({"Retry-After": "soon"})) == 5
    assert _retry_after(limited(None)) == 5
