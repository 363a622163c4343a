"""Setting Stripe up for Upshift: its products and prices brought to the catalog (a pure plan of
changes, then its apply), and its webhook endpoint in Upshift's API version."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from service.adapters.stripe_api import LOOKUP_KEY_METADATA, STRIPE_API_VERSION
from service.adapters.stripe_setup import (
    StripeCatalogStore,
    StripePrice,
    StripeProduct,
    create_webhook_endpoint,
    webhook_endpoints,
)
from service.domain.catalog import Catalog
from service.domain.errors import Conflict
from service.domain.money import Money

if TYPE_CHECKING:
    import stripe

KIND_METADATA = "upshift_kind"
KEY_METADATA = "upshift_key"


@dataclass(frozen=True, slots=True)
class DesiredProduct:
    id: str  # deterministic (upshift_tier_growth), so a re-run finds what an earlier one made
    name: str
    metadata: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class DesiredPrice:
    lookup_key: str
    product_id: str
    amount: int
    currency: str  # ISO upper case, as the catalog writes it
    interval: str
    nickname: str

    @property
    def metadata(self) -> dict[str, str]:
        return {LOOKUP_KEY_METADATA: self.lookup_key}

    def matches(self, price: StripePrice) -> bool:
        """Everything Stripe never changes on a price (its amount is immutable) is as wanted."""
        return (
            price.product == self.product_id
            and price.currency == self.currency.lower()
            and price.unit_amount == self.amount
            and (price.interval, price.interval_count) == (self.interval, 1)
        )

    def describe(self) -> str:
        return f"{Money(self.amount, self.currency)} / {self.interval}"


@dataclass(frozen=True, slots=True)
class CreateProduct:
    product: DesiredProduct

    def describe(self) -> str:
        return f"+ product {self.product.id} ({self.product.name})"


@dataclass(frozen=True, slots=True)
class UpdateProduct:
    product_id: str
    changes: Mapping[str, object]

    def describe(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self.changes.items())
        return f"~ product {self.product_id}: {fields}"


@dataclass(frozen=True, slots=True)
class CreatePrice:
    """A new price taking the lookup key; the one it replaces (if any) is archived after."""

    price: DesiredPrice
    replaces: StripePrice | None = None

    def describe(self) -> str:
        if self.replaces is None:
            price = self.price
            return f"+ price {price.lookup_key}: {price.describe()} on {price.product_id}"
        old = self.replaces
        was = f"{Money(old.unit_amount or 0, old.currency.upper())} / {old.interval}"
        return (
            f"~ price {self.price.lookup_key}: {was} -> {self.price.describe()}: a new price "
            f"takes the lookup key from {old.id}, which is archived"
        )


@dataclass(frozen=True, slots=True)
class UpdatePrice:
    price_id: str
    lookup_key: str
    changes: Mapping[str, object]

    def describe(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self.changes.items())
        return f"~ price {self.lookup_key} ({self.price_id}): {fields}"


Action = CreateProduct | UpdateProduct | CreatePrice | UpdatePrice


@dataclass(frozen=True, slots=True)
class SyncPlan:
    actions: tuple[Action, ...]
    products_in_sync: int
    prices_in_sync: int

    @property
    def empty(self) -> bool:
        return not self.actions

    def describe(self) -> list[str]:
        return [action.describe() for action in self.actions]


@dataclass(frozen=True, slots=True)
class DesiredCatalog:
    products: tuple[DesiredProduct, ...]
    prices: tuple[DesiredPrice, ...]


def desired_catalog(catalog: Catalog) -> DesiredCatalog:
    """One product per self-serve tier and per add-on, one price per lookup key, over every
    catalog version the catalog is published with: accounts grandfathered on an older version
    are still billed at its prices, so they stay active beside the new version's (a changed
    amount has a new lookup key, so nothing is replaced). Names come from the newest version."""
    products: dict[str, DesiredProduct] = {}
    prices: dict[str, DesiredPrice] = {}
    for version in catalog.history.versions:
        found = _desired_of_version(version)
        products.update((product.id, product) for product in found.products)
        for price in found.prices:
            prices.setdefault(price.lookup_key, price)
    return DesiredCatalog(tuple(products.values()), tuple(prices.values()))


def _desired_of_version(catalog: Catalog) -> DesiredCatalog:
    products: list[DesiredProduct] = []
    prices: list[DesiredPrice] = []
    for tier_key, tier in catalog.tiers.items():
        if not tier.prices:
            continue  # sales-assisted: no list price, nothing to sell through Stripe
        product_id = f"upshift_tier_{tier_key}"
        products.append(
            DesiredProduct(product_id, tier.name, {KIND_METADATA: "tier", KEY_METADATA: tier_key})
        )
        for interval, tier_price in tier.prices.items():
            prices.append(
                DesiredPrice(
                    tier_price.base.lookup_key,
                    product_id,
                    tier_price.base.amount,
                    catalog.currency,
                    interval.value,
                    f"{tier.name} base ({interval.value})",
                )
            )
            if tier_price.seat is not None:
                prices.append(
                    DesiredPrice(
                        tier_price.seat.lookup_key,
                        product_id,
                        tier_price.seat.amount,
                        catalog.currency,
                        interval.value,
                        f"{tier.name} seat ({interval.value})",
                    )
                )
    for addon_key, addon in catalog.addons.items():
        product_id = f"upshift_addon_{addon_key}"
        products.append(
            DesiredProduct(
                product_id, addon.name, {KIND_METADATA: "addon", KEY_METADATA: addon_key}
            )
        )
        for interval, price in addon.prices.items():
            prices.append(
                DesiredPrice(
                    price.lookup_key,
                    product_id,
                    price.amount,
                    catalog.currency,
                    interval.value,
                    f"{addon.name} ({interval.value})",
                )
            )
    return DesiredCatalog(tuple(products), tuple(prices))


def plan_sync(
    desired: DesiredCatalog,
    products: Mapping[str, StripeProduct],
    prices: Mapping[str, StripePrice],
) -> SyncPlan:
    """The changes that bring Stripe (`products` by id, `prices` by lookup key) to `desired`.

    Pure. Prices are immutable: a changed amount, interval or product is a new price that takes
    over the lookup key (`transfer_lookup_key`), and the old one is archived.
    """
    actions: list[Action] = []
    products_ok = 0
    for product in desired.products:
        current = products.get(product.id)
        if current is None:
            actions.append(CreateProduct(product))
            continue
        changes: dict[str, object] = {}
        if current.name != product.name:
            changes["name"] = product.name
        if not current.active:
            changes["active"] = True
        if any(current.metadata.get(k) != v for k, v in product.metadata.items()):
            changes["metadata"] = dict(product.metadata)
        if changes:
            actions.append(UpdateProduct(product.id, changes))
        else:
            products_ok += 1
    prices_ok = 0
    for price in desired.prices:
        current_price = prices.get(price.lookup_key)
        if current_price is None:
            actions.append(CreatePrice(price))
        elif not price.matches(current_price):
            actions.append(CreatePrice(price, replaces=current_price))
        else:
            changes = {}
            if not current_price.active:
                changes["active"] = True
            if current_price.metadata.get(LOOKUP_KEY_METADATA) != price.lookup_key:
                changes["metadata"] = price.metadata
            if changes:
                actions.append(UpdatePrice(current_price.id, price.lookup_key, changes))
            else:
                prices_ok += 1
    return SyncPlan(tuple(actions), products_ok, prices_ok)


def read_stripe(
    store: StripeCatalogStore, desired: DesiredCatalog
) -> tuple[dict[str, StripeProduct], dict[str, StripePrice]]:
    return (
        store.products([product.id for product in desired.products]),
        store.prices([price.lookup_key for price in desired.prices]),
    )


def apply_sync(store: StripeCatalogStore, plan: SyncPlan) -> int:
    """Execute the plan: products first (prices need them), then prices; returns the count.

    Every create carries a deterministic idempotency key, so a run cut short and repeated does
    not create twice; a run repeated after success plans nothing.
    """
    ordered: Sequence[Action] = sorted(
        plan.actions, key=lambda action: not isinstance(action, CreateProduct | UpdateProduct)
    )
    for action in ordered:
        if isinstance(action, CreateProduct):
            product = action.product
            store.create_product(
                product.id, product.name, product.metadata, f"upshift:sync:product:{product.id}"
            )
        elif isinstance(action, UpdateProduct):
            store.update_product(action.product_id, action.changes)
        elif isinstance(action, UpdatePrice):
            store.update_price(action.price_id, action.changes)
        else:
            _create_price(store, action)
    return len(ordered)


def _create_price(store: StripeCatalogStore, action: CreatePrice) -> None:
    price = action.price
    replaced = action.replaces
    store.create_price(
        {
            "product": price.product_id,
            "currency": price.currency.lower(),
            "unit_amount": price.amount,
            "recurring": {"interval": price.interval},
            "lookup_key": price.lookup_key,
            "transfer_lookup_key": replaced is not None,
            "nickname": price.nickname,
            "metadata": price.metadata,
        },
        f"upshift:sync:price:{price.lookup_key}:{price.product_id}:{price.amount}:"
        f"{price.currency}:{price.interval}:{replaced.id if replaced else 'new'}",
    )
    if replaced is not None and replaced.active:
        store.update_price(replaced.id, {"active": False})


def sync_stripe(store: StripeCatalogStore, catalog: Catalog, *, apply: bool) -> SyncPlan:
    """Plan (and with `apply`, execute) the sync; returns the plan either way."""
    desired = desired_catalog(catalog)
    plan = plan_sync(desired, *read_stripe(store, desired))
    if apply and not plan.empty:
        apply_sync(store, plan)
    return plan


# --- the webhook endpoint ------------------------------------------------------------------


class EndpointExists(Conflict):
    """An endpoint is already at the URL; `fits`: it sends what Upshift reads, as it reads it."""

    code = "webhook_endpoint_exists"

    def __init__(self, detail: str, *, fits: bool) -> None:
        super().__init__(detail)
        self.fits = fits


@dataclass(frozen=True, slots=True)
class CreatedEndpoint:
    id: str
    url: str
    api_version: str
    events: tuple[str, ...]
    secret: str


def ensure_webhook_endpoint(
    client: stripe.StripeClient, url: str, events: Sequence[str]
) -> CreatedEndpoint:
    """Create Stripe's webhook endpoint at `url` for `events`, pinned to Upshift's API version.

    An endpoint already at `url` is never changed (its signing secret cannot be read back, and
    its events may be someone else's): EndpointExists says whether it fits and what to do.
    """
    for endpoint in webhook_endpoints(client):
        if endpoint.get("url") != url:
            continue
        version = endpoint.get("api_version")
        missing = sorted(set(events) - set(endpoint.get("enabled_events") or ()))
        if "*" in (endpoint.get("enabled_events") or ()):
            missing = []
        if version == STRIPE_API_VERSION and not missing:
            raise EndpointExists(
                f"{endpoint['id']} at {url} already sends the events Upshift handles in API "
                f"version {version}; nothing to do (its signing secret is in the Dashboard)",
                fits=True,
            )
        problems = []
        if version != STRIPE_API_VERSION:
            problems.append(f"renders events in API version {version or 'the account default'}")
        if missing:
            problems.append(f"does not send {', '.join(missing)}")
        raise EndpointExists(
            f"{endpoint['id']} at {url} {' and '.join(problems)}, not what Upshift reads "
            f"({STRIPE_API_VERSION}); delete it in the Dashboard, then run this again",
            fits=False,
        )
    created = create_webhook_endpoint(client, url, list(events))
    return CreatedEndpoint(
        id=created["id"],
        url=created["url"],
        api_version=created.get("api_version") or STRIPE_API_VERSION,
        events=tuple(created.get("enabled_events") or events),
        secret=created.get("secret") or "",
    )
