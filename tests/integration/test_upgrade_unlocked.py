"""Stripe is never called while the account's row is locked (issue 13, point 6).

A slow Stripe must not stall every other writer of the account (usage ingest, renewals, the
webhooks): the upgrade claims the account in a short transaction, asks Stripe with no
transaction open, and books the result in a second one. While the claim is held, another
upgrade of the account is refused (409 upgrade_in_progress, Retry-After), a copy of the same
request waits for the first one's answer, and Stripe's webhooks about the account are answered
503 so that Stripe delivers them again once the upgrade is booked.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text

from service.adapters.orm import AccountRow
from tests.api.test_accounts import assert_problem
from tests.api.test_stripe_upgrades import acme  # noqa: F401  (the fixture)
from tests.live_server import live_server
from tests.stripe_fixtures_app import StripeWorld, assert_books_balance, ledger_rows
from tests.usage_fixtures import wait_for


def upgrade(http: Any, headers: dict[str, str], seats: int, key: str) -> httpx.Response:
    return http.post(
        "/v1/accounts/acme/upgrades",
        json={"target": {"seats": seats}},
        headers={**headers, "Idempotency-Key": key},
    )


def test_stripe_is_asked_with_the_account_unlocked(
    stripe_app: FastAPI,
    stripe_http: TestClient,
    admin_headers: dict[str, str],
    acme: dict,  # noqa: F811
    world: StripeWorld,
    db: Engine,
) -> None:
    # Stripe applies the change, then its answer takes 2 s (and is lost: the SDK retries).
    world.fake.fail_next("subscriptions.update", "timeout_after_apply", hang_seconds=2.0)
    with live_server(stripe_app) as base, httpx.Client(base_url=base, timeout=30) as http:
        answers: dict[str, httpx.Response] = {}
        first = threading.Thread(
            target=lambda: answers.setdefault("first", upgrade(http, admin_headers, 9, "k1"))
        )
        first.start()
        wait_for(lambda: world.fake.requests_for("subscriptions.update"), "Stripe asked")

        # Another writer takes the account's row lock at once.
        if db.dialect.name == "postgresql":
            with db.begin() as connection:
                connection.execute(text("SET LOCAL lock_timeout = '500ms'"))
                locked = connection.execute(
                    select(AccountRow.id).where(AccountRow.id == "acme").with_for_update()
                ).scalar_one()
                assert locked == "acme"
        # Another upgrade of the account waits its turn; a copy of the first waits for it.
        other = upgrade(http, admin_headers, 11, "k2")
        assert_problem(other, 409, "upgrade_in_progress")
        assert int(other.headers["Retry-After"]) > 0
        # Stripe's webhooks about the change are left for Stripe's next delivery.
        statuses = [status for _, status in world.fake.deliver(f"{base}/v1/webhooks/stripe")]
        assert statuses and set(statuses) <= {200, 503}, statuses
        assert 503 in statuses
        copy = upgrade(http, admin_headers, 9, "k1")
        first.join(timeout=30)
    assert answers["first"].status_code == 200, answers["first"].text
    assert copy.status_code == 200 and copy.json() == answers["first"].json()
    assert copy.headers["Idempotent-Replayed"] == "true"
    assert world.fake.update_count(acme["billing_subscription_id"]) == 1
    # Stripe delivers the refused events again: they find the account up to date.
    events = [e for e in world.fake.events if e["type"].startswith(("customer.", "invoice."))]
    redelivered = world.deliver(stripe_http, events)
    assert all(a["status"] in ("processed", "duplicate", "ignored") for a in redelivered)
    assert len(ledger_rows(db, "acme")) == 2
    assert_books_balance(
        stripe_http, admin_headers, db, world, "acme", acme["billing_subscription_id"]
    )
