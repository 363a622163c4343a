"""POST /v1/webhooks/stripe: verified, stored once, processed by re-fetching the subscription."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from service.adapters.billing_tables import WebhookEventRow
from service.adapters.db import make_session_factory
from service.services.webhooks import process_unhandled
from tests.api.test_accounts import assert_problem
from tests.live_server import live_server
from tests.stripe_fixtures_app import (
    GROWTH_7,
    StripeWorld,
    ago,
    assert_books_balance,
    ledger_rows,
)


@pytest.fixture
def acme(
    stripe_http: TestClient, admin_headers: dict[str, str], world: StripeWorld
) -> dict[str, Any]:
    sub = world.subscribe("acme", GROWTH_7)
    account = world.link(stripe_http, admin_headers, "acme", GROWTH_7, sub)
    world.fake.deliver(lambda body, signature: None)  # the subscription's creation is known
    world.advance(days=3)
    return account


def stored_events(db: Engine) -> list[WebhookEventRow]:
    with Session(db) as session:
        return list(session.scalars(select(WebhookEventRow).order_by(WebhookEventRow.id)))


def post(http: TestClient, body: bytes, signature: str | None) -> Any:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return http.post("/v1/webhooks/stripe", content=body, headers=headers)


def account(http: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    return http.get("/v1/accounts/acme", headers=headers).json()


def set_seats(world: StripeWorld, subscription_id: str, seat_quantity: int) -> None:
    """A change made in Stripe's dashboard (directly through the SDK, not through Upshift)."""
    sub = world.subscription(subscription_id)
    item = next(i for i in sub["items"].data if i.price.lookup_key == "relay_growth_seat_month")
    world.sdk.v1.subscriptions.update(
        subscription_id,
        params={"items": [{"id": item.id, "quantity": seat_quantity}]},
    )


def test_bad_stale_or_missing_signatures_store_nothing(
    stripe_http: TestClient, acme: dict, world: StripeWorld, db: Engine
) -> None:
    event = world.fake.events_of_type("customer.subscription.created")[-1]
    body, signature = world.fake.signed_payload(event)
    tampered = body.replace(b'"active"', b'"canceled"', 1)
    assert_problem(post(stripe_http, tampered, signature), 400, "invalid_signature")
    _, stale = world.fake.signed_payload(event, timestamp=ago(301))
    assert_problem(post(stripe_http, body, stale), 400, "invalid_signature")
    assert_problem(post(stripe_http, body, None), 400, "invalid_signature")
    assert_problem(post(stripe_http, body, "t=abc,v1=zz"), 400, "invalid_signature")
    _, wrong_secret = world.fake.signed_payload(event)
    wrong = wrong_secret.replace("v1=", "v1=0")
    assert_problem(post(stripe_http, body, wrong), 400, "invalid_signature")
    assert stored_events(db) == []


def test_local_mode_has_no_stripe_webhooks(client: TestClient, db: Engine) -> None:
    response = post(client, b"{}", "t=1,v1=00")
    assert_problem(response, 400, "webhook_not_configured")
    assert stored_events(db) == []


def test_signed_garbage_is_refused(stripe_http: TestClient, world: StripeWorld, db: Engine) -> None:
    for body in (b"[1, 2]", b"not json", b'{"object": "event", "id": "evt_1"}'):
        signature = _sign(world, body)
        assert_problem(post(stripe_http, body, signature), 400, "invalid_event")
    assert stored_events(db) == []


def _sign(world: StripeWorld, body: bytes) -> str:
    import hashlib
    import hmac
    import time

    t = int(time.time())
    digest = hmac.new(
        world.fake.webhook_secret.encode(), f"{t}.".encode() + body, hashlib.sha256
    ).hexdigest()
    return f"t={t},v1={digest}"


def test_a_replayed_event_is_a_no_op(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    acme: dict,
    world: StripeWorld,
    db: Engine,
) -> None:
    set_seats(world, acme["billing_subscription_id"], 4)
    [event] = world.fake.events_of_type("customer.subscription.updated")
    body, signature = world.fake.signed_payload(event)
    first = post(stripe_http, body, signature)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "processed"
    assert first.json()["account_id"] == "acme"
    assert account(stripe_http, admin_headers)["seats"] == 9
    second = post(stripe_http, *world.fake.signed_payload(event))
    assert second.status_code == 200
    assert second.json() == {
        "status": "duplicate",
        "event_id": event["id"],
        "type": "customer.subscription.updated",
        "account_id": None,
        "detail": None,
    }
    [row] = stored_events(db)
    assert (row.external_id, row.error) == (event["id"], None) and row.handled_at is not None
    entries = ledger_rows(db, "acme")
    assert [(e.kind, e.source, e.mrr_delta_minor) for e in entries][-1] == (
        "expansion",
        "webhook",
        2 * 1_500,
    )
    assert len(entries) == 2
    assert_books_balance(
        stripe_http, admin_headers, db, world, "acme", acme["billing_subscription_id"]
    )


def test_events_out_of_order_converge_on_stripe(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    acme: dict,
    world: StripeWorld,
    db: Engine,
) -> None:
    sub_id = acme["billing_subscription_id"]
    set_seats(world, sub_id, 4)
    world.advance(hours=1)
    set_seats(world, sub_id, 3)
    updates = world.fake.events_of_type("customer.subscription.updated")
    assert len(updates) == 2
    answers = world.deliver(stripe_http, list(reversed(updates)))
    assert [a["detail"] for a in answers] == ["account updated", "account already matches Stripe"]
    assert account(stripe_http, admin_headers)["seats"] == 8  # the latest: 5 included + 3
    assert [e.kind for e in ledger_rows(db, "acme")] == ["new", "expansion"]
    assert_books_balance(stripe_http, admin_headers, db, world, "acme", sub_id)


def test_cancellation_in_the_dashboard_is_churn(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    acme: dict,
    world: StripeWorld,
    db: Engine,
) -> None:
    sub_id = acme["billing_subscription_id"]
    world.sdk.v1.subscriptions.cancel(sub_id)
    answers = world.deliver(stripe_http)
    assert "customer.subscription.deleted" in [a["type"] for a in answers]
    state = account(stripe_http, admin_headers)
    assert (state["status"], state["mrr"]["amount_minor"]) == ("canceled", 0)
    churn = ledger_rows(db, "acme")[-1]
    assert (churn.kind, churn.source, churn.mrr_after_minor) == ("churn", "webhook", 0)
    assert churn.stripe_subscription_id == sub_id
    assert_books_balance(stripe_http, admin_headers, db, world, "acme", sub_id)


def test_a_failed_renewal_marks_the_account_past_due_and_keeps_mrr(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    acme: dict,
    world: StripeWorld,
    db: Engine,
) -> None:
    sub_id = acme["billing_subscription_id"]
    world.fake.fail_next("renewal", "card_declined")
    world.advance(days=27)  # past the period end: the renewal invoice is not paid
    answers = world.deliver(stripe_http)
    assert "invoice.payment_failed" in [a["type"] for a in answers]
    state = account(stripe_http, admin_headers)
    assert state["status"] == "past_due"
    assert state["current_period_start"] == "2026-12-10T12:00:00Z"
    assert state["mrr"]["amount_minor"] == 9_900 + 2 * 1_500
    assert len(ledger_rows(db, "acme")) == 1  # MRR did not move
    assert_books_balance(stripe_http, admin_headers, db, world, "acme", sub_id)

    invoice = world.subscription(sub_id).latest_invoice
    world.sdk.v1.invoices.pay(invoice)
    world.deliver(stripe_http)
    assert account(stripe_http, admin_headers)["status"] == "active"


def test_a_pending_update_expires_or_is_applied_when_paid(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    acme: dict,
    world: StripeWorld,
    db: Engine,
) -> None:
    sub_id = acme["billing_subscription_id"]
    world.fake.fail_next(sub_id, "card_declined")
    declined = stripe_http.post(
        "/v1/accounts/acme/upgrades",
        json={"target": {"seats": 9}},
        headers={**admin_headers, "Idempotency-Key": "k1"},
    )
    assert_problem(declined, 402, "payment_failed")
    world.deliver(stripe_http)
    world.advance(hours=23)
    answers = world.deliver(stripe_http)
    expired = [a for a in answers if a["type"] == "customer.subscription.pending_update_expired"]
    assert [a["status"] for a in expired] == ["processed"]
    assert account(stripe_http, admin_headers)["seats"] == 7
    assert len(ledger_rows(db, "acme")) == 1

    # Declined again; this time the customer pays the open invoice later (hosted page, retry).
    world.fake.fail_next(sub_id, "card_declined")
    again = stripe_http.post(
        "/v1/accounts/acme/upgrades",
        json={"target": {"seats": 9}},
        headers={**admin_headers, "Idempotency-Key": "k2"},
    )
    assert again.status_code == 402
    world.sdk.v1.invoices.pay(world.subscription(sub_id).latest_invoice)
    answers = world.deliver(stripe_http)
    assert "customer.subscription.pending_update_applied" in [a["type"] for a in answers]
    assert account(stripe_http, admin_headers)["seats"] == 9
    entry = ledger_rows(db, "acme")[-1]
    assert (entry.kind, entry.source) == ("expansion", "webhook")
    assert_books_balance(stripe_http, admin_headers, db, world, "acme", sub_id)


def test_a_subscription_created_elsewhere_links_by_metadata(
    stripe_http: TestClient, admin_headers: dict[str, str], world: StripeWorld, db: Engine
) -> None:
    stripe_http.put(
        "/v1/accounts/beta",
        json={"tier": "starter", "seats": 3, "status": "canceled"},
        headers=admin_headers,
    )
    sub = world.subscribe("beta", GROWTH_7, metadata={"upshift_account_id": "beta"})
    world.deliver(stripe_http)
    state = stripe_http.get("/v1/accounts/beta", headers=admin_headers).json()
    assert (state["status"], state["tier"], state["seats"]) == ("active", "growth", 7)
    assert state["billing_subscription_id"] == sub.id
    assert [(e.kind, e.source) for e in ledger_rows(db, "beta")] == [("new", "webhook")]
    assert_books_balance(stripe_http, admin_headers, db, world, "beta", sub.id)


def test_unknown_subscriptions_and_other_events_are_ignored(
    stripe_http: TestClient, world: StripeWorld, db: Engine
) -> None:
    world.subscribe("nobody", GROWTH_7)
    answers = world.deliver(stripe_http)
    assert {a["status"] for a in answers} == {"ignored"}
    assert {a["type"] for a in answers} >= {"customer.created", "customer.subscription.created"}
    rows = stored_events(db)
    assert len(rows) == len(answers)
    assert all(row.handled_at is not None for row in rows)


def test_a_processing_failure_is_kept_and_retried(
    stripe_http: TestClient,
    stripe_app: Any,
    admin_headers: dict[str, str],
    acme: dict,
    world: StripeWorld,
    db: Engine,
) -> None:
    sub_id = acme["billing_subscription_id"]
    set_seats(world, sub_id, 4)
    [event] = world.fake.events_of_type("customer.subscription.updated")
    world.fake.fail_next("subscriptions.retrieve", "503_before_apply", times=3)
    body, signature = world.fake.signed_payload(event)
    response = post(stripe_http, body, signature)
    # Not a 2xx: Stripe counts any 2xx as delivered and would never send it again.
    assert response.status_code == 503, response.text
    assert response.json()["status"] == "pending_retry"
    [row] = stored_events(db)
    assert row.handled_at is None and "BillingUnavailable" in (row.error or "")
    assert account(stripe_http, admin_headers)["seats"] == 7

    report = process_unhandled(
        make_session_factory(db), stripe_app.state.stripe, stripe_app.state.catalog, world.clock
    )
    assert (report.processed, report.failed) == (1, 0)
    [row] = stored_events(db)
    assert row.handled_at is not None and row.error is None
    assert account(stripe_http, admin_headers)["seats"] == 9
    assert post(stripe_http, body, signature).json()["status"] == "duplicate"
    assert_books_balance(stripe_http, admin_headers, db, world, "acme", sub_id)


def test_a_redelivery_retries_an_unhandled_event(
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    acme: dict,
    world: StripeWorld,
    db: Engine,
) -> None:
    set_seats(world, acme["billing_subscription_id"], 4)
    [event] = world.fake.events_of_type("customer.subscription.updated")
    world.fake.fail_next("subscriptions.retrieve", "503_before_apply", times=3)
    assert post(stripe_http, *world.fake.signed_payload(event)).status_code == 503
    retried = post(stripe_http, *world.fake.signed_payload(event))
    assert retried.status_code == 200 and retried.json()["status"] == "processed"
    assert account(stripe_http, admin_headers)["seats"] == 9
    with Session(db) as session:
        assert session.scalar(select(func.count()).select_from(WebhookEventRow)) == 1


def test_concurrent_deliveries_of_one_event_store_and_apply_it_once(
    stripe_app: Any,
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    acme: dict,
    world: StripeWorld,
    db: Engine,
) -> None:
    set_seats(world, acme["billing_subscription_id"], 4)
    [event] = world.fake.events_of_type("customer.subscription.updated")
    body, signature = world.fake.signed_payload(event)
    headers = {"Stripe-Signature": signature, "Content-Type": "application/json"}
    with (
        live_server(stripe_app) as base_url,
        httpx.Client(base_url=base_url, timeout=60) as http,
        ThreadPoolExecutor(max_workers=20) as pool,
    ):
        responses = list(
            pool.map(
                lambda _: http.post("/v1/webhooks/stripe", content=body, headers=headers),
                range(20),
            )
        )
    statuses = sorted(r.json()["status"] for r in responses)
    assert statuses == ["duplicate"] * 19 + ["processed"], statuses
    assert len(stored_events(db)) == 1
    assert [e.source for e in ledger_rows(db, "acme")] == ["admin", "webhook"]
    assert_books_balance(
        stripe_http, admin_headers, db, world, "acme", acme["billing_subscription_id"]
    )


def test_the_stored_payload_is_the_event(
    stripe_http: TestClient, acme: dict, world: StripeWorld, db: Engine
) -> None:
    set_seats(world, acme["billing_subscription_id"], 4)
    [event] = world.fake.events_of_type("customer.subscription.updated")
    body, signature = world.fake.signed_payload(event)
    post(stripe_http, body, signature)
    [row] = stored_events(db)
    assert row.payload == json.loads(body)
    assert (row.source, row.type) == ("stripe", "customer.subscription.updated")


signatures = st.one_of(
    st.none(),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=120),
    st.builds(
        lambda t, digest: f"t={t},v1={digest}",
        st.integers(min_value=-(2**40), max_value=2**40),
        st.text("0123456789abcdef", min_size=0, max_size=70),
    ),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.one_of(st.binary(max_size=3000), st.just(b"{}")), signature=signatures)
def test_no_input_without_stripes_signature_gets_past_400(
    stripe_http: TestClient, db: Engine, body: bytes, signature: str | None
) -> None:
    response = post(stripe_http, body, signature)
    assert response.status_code == 400, response.text
    assert response.json()["code"] in {"invalid_signature", "invalid_event"}
    assert stored_events(db) == []


def test_an_incomplete_subscription_is_linked_without_mrr_until_its_first_payment(
    stripe_http: TestClient, admin_headers: dict[str, str], world: StripeWorld, db: Engine
) -> None:
    """Stripe's `incomplete`: created, but the first payment failed (or needs the customer).
    The account follows it (no MRR, no offers) and books `new` when the invoice is paid."""
    stripe_http.put(
        "/v1/accounts/beta",
        json={"tier": "starter", "seats": 3, "status": "canceled"},
        headers=admin_headers,
    )
    world.fake.fail_next("*", "card_declined")
    sub = world.subscribe("beta", GROWTH_7, metadata={"upshift_account_id": "beta"})
    assert sub.status == "incomplete"
    world.deliver(stripe_http)
    state = stripe_http.get("/v1/accounts/beta", headers=admin_headers).json()
    assert (state["status"], state["tier"], state["mrr"]["amount_minor"]) == (
        "incomplete",
        "growth",
        0,
    )
    assert ledger_rows(db, "beta") == []
    offers = stripe_http.get("/v1/accounts/beta/upgrade-offers", headers=admin_headers)
    assert offers.status_code == 200 and offers.json()["offers"] == []

    world.sdk.v1.invoices.pay(world.subscription(sub.id).latest_invoice)
    world.deliver(stripe_http)
    state = stripe_http.get("/v1/accounts/beta", headers=admin_headers).json()
    assert state["status"] == "active"
    assert [(e.kind, e.source) for e in ledger_rows(db, "beta")] == [("new", "webhook")]
    assert_books_balance(stripe_http, admin_headers, db, world, "beta", sub.id)


def test_a_paused_subscription_pays_nothing_and_gets_no_offers(
    stripe_http: TestClient,
    stripe_app: Any,
    admin_headers: dict[str, str],
    acme: dict,
    world: StripeWorld,
    db: Engine,
) -> None:
    """Stripe pauses a subscription whose trial ends without a payment method
    (trial_settings.end_behavior.missing_payment_method = pause). The double does not model
    trials, so the subscription as Stripe would return it is handed to the sync directly."""
    from dataclasses import replace

    from service.adapters.orm import AccountRow
    from service.services.webhooks import sync_account

    billing = stripe_app.state.stripe
    remote = billing.subscription(acme["billing_subscription_id"])
    factory = make_session_factory(db)
    for status, key in (("paused", "paused"), ("active", "resumed")):
        with factory() as session, session.begin():
            row = session.get(AccountRow, "acme")
            assert row is not None
            sync_account(
                session,
                stripe_app.state.catalog,
                row,
                replace(remote, status=status),
                idempotency_key=f"test:{key}",
                happened_at=world.clock.now(),
                now=world.clock.now(),
            )
        state = account(stripe_http, admin_headers)
        assert state["status"] == status
        assert (state["mrr"]["amount_minor"] == 0) is (status == "paused")
        quote = stripe_http.post(
            "/v1/accounts/acme/quotes", json={"target": {"seats": 9}}, headers=admin_headers
        )
        if status == "paused":  # nothing to sell to a paused subscription, so no offers either
            assert_problem(quote, 409, "account_not_billable")
            offers = stripe_http.get("/v1/accounts/acme/upgrade-offers", headers=admin_headers)
            assert offers.status_code == 200 and offers.json()["offers"] == []
        else:
            assert quote.status_code == 200, quote.text
    assert [row.kind for row in ledger_rows(db, "acme")] == ["new", "churn", "reactivation"]
