"""Shared fixtures for Upshift in Stripe mode: the app pointed at the fake Stripe, the catalog
synced into it, and accounts linked to a customer and subscription made through the SDK.

tests/conftest.py imports the fixtures, so every test module can use them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import stripe
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from service.adapters.catalog_loader import load_catalog
from service.adapters.ledger_tables import LedgerEntryRow
from service.adapters.stripe_api import StripeBilling
from service.adapters.stripe_setup import StripeCatalogStore
from service.api.app import create_app
from service.domain.accounts import Plan, plan_lines
from service.domain.catalog import Catalog, Interval
from service.domain.quotes import plan_mrr
from service.services.stripe_sync import sync_stripe
from service.settings import Settings
from tests.conftest import CATALOG_PATH
from tests.fakes.clock import FakeClock
from tests.fakes.stripe_fixtures import fake_stripe, fake_stripe_server
from tests.fakes.stripe_server import FakeStripe

__all__ = [
    "StripeWorld",
    "fake_stripe",
    "fake_stripe_server",
    "stripe_app",
    "stripe_http",
    "stripe_settings",
    "world",
]

DAY = 86_400
GROWTH_7 = Plan(tier="growth", interval=Interval.month, seats=7)


def unix(moment: datetime) -> int:
    return int(moment.timestamp())


@pytest.fixture
def stripe_settings(database_url: str, fake_stripe: FakeStripe) -> Settings:
    return Settings(
        database_url=database_url,
        catalog_path=CATALOG_PATH,
        token_secret=SecretStr("test-token-secret"),
        billing_backend="stripe",
        stripe_secret_key=SecretStr(fake_stripe.api_key),
        stripe_api_base=fake_stripe.base_url,
        stripe_webhook_secret=SecretStr(fake_stripe.webhook_secret),
    )


@pytest.fixture
def stripe_app(db: Engine, stripe_settings: Settings, world: StripeWorld) -> FastAPI:
    return create_app(stripe_settings, clock=world.clock, engine=db)


@pytest.fixture
def stripe_http(stripe_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(stripe_app, raise_server_exceptions=False) as test_client:
        yield test_client


@dataclass
class StripeWorld:
    """The fake Stripe and the app's clock, moved together, plus what the tests create."""

    fake: FakeStripe
    clock: FakeClock
    catalog: Catalog
    sdk: stripe.StripeClient
    customers: dict[str, str] = field(default_factory=dict)

    def advance(self, **delta: float) -> None:
        """Move both clocks; Stripe runs its renewals, schedules and expiries on the way."""
        self.clock.advance(**delta)
        self.fake.set_time(unix(self.clock.now()))

    def billing(self) -> StripeBilling:
        return StripeBilling(self.fake.client(max_network_retries=2), self.catalog, None)

    def price_id(self, lookup_key: str) -> str:
        prices = self.sdk.v1.prices.list(params={"lookup_keys": [lookup_key]}).data
        assert len(prices) == 1, lookup_key
        return prices[0].id

    def subscribe(
        self, account_id: str, plan: Plan, *, test_clock: str | None = None, **extra: Any
    ) -> stripe.Subscription:
        """A customer (on `test_clock`, if given) subscribed to `plan`."""
        customer_params: dict[str, Any] = {"name": account_id}
        if test_clock is not None:
            customer_params["test_clock"] = test_clock
        customer = self.sdk.v1.customers.create(params=customer_params)  # type: ignore[arg-type]
        self.customers[account_id] = customer.id
        items = [
            {"price": self.price_id(line.lookup_key), "quantity": line.quantity}
            for line in plan_lines(self.catalog, plan)
        ]
        return self.sdk.v1.subscriptions.create(
            params={"customer": customer.id, "items": items, **extra}  # type: ignore[typeddict-item]
        )

    def subscription(self, subscription_id: str) -> stripe.Subscription:
        return self.sdk.v1.subscriptions.retrieve(subscription_id)

    def quantities(self, subscription_id: str) -> dict[str, int]:
        """lookup_key -> quantity of the subscription's items (zero-quantity ones included)."""
        sub = self.subscription(subscription_id)
        return {item.price.lookup_key: item.quantity for item in sub["items"].data}

    def stripe_mrr(self, subscription_id: str) -> int:
        """MRR from Stripe's subscription state, as Upshift maps it (0 unless it bills)."""
        remote = self.billing().subscription(subscription_id)
        if remote.status not in ("active", "past_due") or remote.plan is None:
            return 0
        return plan_mrr(self.catalog, remote.plan).minor

    def link(
        self,
        http: TestClient,
        headers: dict[str, str],
        account_id: str,
        plan: Plan,
        sub: stripe.Subscription,
    ) -> dict[str, Any]:
        """PUT the account as Stripe bills it (same plan, period and ids)."""
        item = sub["items"].data[0]
        body = {
            "tier": plan.tier,
            "interval": plan.interval.value,
            "seats": plan.seats,
            "addons": plan.addons,
            "current_period_start": _iso(item.current_period_start),
            "current_period_end": _iso(item.current_period_end),
            "billing_customer_id": sub.customer,
            "billing_subscription_id": sub.id,
        }
        response = http.put(f"/v1/accounts/{account_id}", json=body, headers=headers)
        assert response.status_code in (200, 201), response.text
        return response.json()

    def deliver(self, http: TestClient, events: list[dict] | None = None) -> list[dict]:
        """Post Stripe's events (by default every one not delivered yet) to the webhook."""
        answers: list[dict] = []

        def post(body: bytes, signature: str) -> int:
            response = http.post(
                "/v1/webhooks/stripe",
                content=body,
                headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
            )
            assert response.status_code in (200, 202), response.text
            answers.append(response.json())
            return response.status_code

        self.fake.deliver(post, events)
        return answers


def _iso(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture
def world(fake_stripe: FakeStripe, clock: FakeClock) -> StripeWorld:
    """The catalog synced into the fake Stripe, whose clock now equals the app's."""
    catalog = load_catalog(CATALOG_PATH)
    sdk = fake_stripe.client()
    fake_stripe.set_time(unix(clock.now()))
    sync_stripe(StripeCatalogStore(sdk), catalog, apply=True)
    fake_stripe.deliver(lambda body, signature: None)  # setup events are not the tests' business
    return StripeWorld(fake_stripe, clock, catalog, sdk)


def ledger_rows(db: Engine, account_id: str) -> list[LedgerEntryRow]:
    with Session(db) as session:
        return list(
            session.scalars(
                select(LedgerEntryRow)
                .where(LedgerEntryRow.account_id == account_id)
                .order_by(LedgerEntryRow.id)
            )
        )


def assert_books_balance(
    http: TestClient,
    headers: dict[str, str],
    db: Engine,
    world: StripeWorld,
    account_id: str,
    subscription_id: str,
) -> None:
    """Σ ledger MRR deltas == the account's MRR == the MRR of Stripe's subscription."""
    account = http.get(f"/v1/accounts/{account_id}", headers=headers).json()
    total = sum(row.mrr_delta_minor for row in ledger_rows(db, account_id))
    assert total == account["mrr"]["amount_minor"] == world.stripe_mrr(subscription_id)


def ago(seconds: int) -> int:
    return int((datetime.now(UTC) - timedelta(seconds=seconds)).timestamp())
