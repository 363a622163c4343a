"""Setting Stripe up for Upshift: products and prices for `catalog sync-stripe`, and the webhook
endpoint, in Upshift's API version."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import stripe

from service.adapters.stripe_api import STRIPE_API_VERSION, Json, as_json, id_of, stripe_errors

# --- the webhook endpoint ------------------------------------------------------------------


def webhook_endpoints(client: stripe.StripeClient) -> list[Json]:
    """Every webhook endpoint of the account."""
    with stripe_errors("list the webhook endpoints"):
        found = client.v1.webhook_endpoints.list(params={"limit": 100})
        return [as_json(endpoint) for endpoint in found.auto_paging_iter()]


def create_webhook_endpoint(client: stripe.StripeClient, url: str, events: list[str]) -> Json:
    """A webhook endpoint at `url` for `events`, its events rendered in Upshift's API version.
    Its `secret` is in this answer only (Stripe returns it at creation alone)."""
    with stripe_errors("create the webhook endpoint"):
        created = client.v1.webhook_endpoints.create(
            params={
                "url": url,
                "enabled_events": events,
                "api_version": STRIPE_API_VERSION,
                "description": "Upshift",
            }
        )
    return as_json(created)


# --- products and prices, for `catalog sync-stripe` ----------------------------------------


@dataclass(frozen=True, slots=True)
class StripeProduct:
    id: str
    name: str
    active: bool
    metadata: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class StripePrice:
    id: str
    lookup_key: str | None
    product: str
    currency: str  # lower case, as Stripe writes it
    unit_amount: int | None
    interval: str | None
    interval_count: int
    active: bool
    metadata: Mapping[str, str]


class StripeCatalogStore:
    """Reads and writes of Stripe products and prices; every write carries an idempotency key."""

    def __init__(self, client: stripe.StripeClient) -> None:
        self.client = client

    def products(self, ids: list[str]) -> dict[str, StripeProduct]:
        found: dict[str, StripeProduct] = {}
        with stripe_errors("list products"):
            for start in range(0, len(ids), 100):
                listed = self.client.v1.products.list(
                    params={"ids": ids[start : start + 100], "limit": 100}
                )
                for raw in (as_json(product) for product in listed.data):
                    found[raw["id"]] = StripeProduct(
                        raw["id"], raw["name"], bool(raw["active"]), dict(raw.get("metadata") or {})
                    )
        return found

    def prices(self, lookup_keys: list[str]) -> dict[str, StripePrice]:
        found: dict[str, StripePrice] = {}
        with stripe_errors("list prices"):
            for start in range(0, len(lookup_keys), 10):  # Stripe's limit per call
                listed = self.client.v1.prices.list(
                    params={"lookup_keys": lookup_keys[start : start + 10], "limit": 10}
                )
                for raw in (as_json(price) for price in listed.data):
                    recurring = raw.get("recurring") or {}
                    found[raw["lookup_key"]] = StripePrice(
                        id=raw["id"],
                        lookup_key=raw["lookup_key"],
                        product=id_of(raw["product"]) or "",
                        currency=raw["currency"],
                        unit_amount=raw.get("unit_amount"),
                        interval=recurring.get("interval"),
                        interval_count=int(recurring.get("interval_count") or 1),
                        active=bool(raw["active"]),
                        metadata=dict(raw.get("metadata") or {}),
                    )
        return found

    def create_product(
        self, product_id: str, name: str, metadata: Mapping[str, str], idempotency_key: str
    ) -> None:
        with stripe_errors(f"create product {product_id}"):
            self.client.v1.products.create(
                params={"id": product_id, "name": name, "metadata": dict(metadata)},
                options={"idempotency_key": idempotency_key},
            )

    def update_product(self, product_id: str, changes: Mapping[str, Any]) -> None:
        with stripe_errors(f"update product {product_id}"):
            self.client.v1.products.update(product_id, params=dict(changes))  # type: ignore[arg-type]

    def create_price(self, params: Mapping[str, Any], idempotency_key: str) -> str:
        with stripe_errors(f"create price {params.get('lookup_key')}"):
            price = self.client.v1.prices.create(
                params=dict(params),  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        return str(price.id)

    def update_price(self, price_id: str, changes: Mapping[str, Any]) -> None:
        with stripe_errors(f"update price {price_id}"):
            self.client.v1.prices.update(price_id, params=dict(changes))  # type: ignore[arg-type]
