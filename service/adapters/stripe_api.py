"""Stripe as Upshift sees it: one client, prices by lookup key, subscriptions as plans."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import stripe

from service.domain.accounts import Plan, plan_lines
from service.domain.catalog import Catalog, CatalogHistory, Interval
from service.domain.errors import BillingUnavailable, Conflict, PaymentDeclined
from service.domain.money import Money, monthly_from_interval, percent_of, round_half_away
from service.domain.periods import Period
from service.settings import Settings

log = logging.getLogger("upshift.stripe")

# Pinned to the version the SDK (stripe 16.x) is typed for, whatever the account's default is.
STRIPE_API_VERSION = "2026-10-28.endive"
MAX_NETWORK_RETRIES = 2
PRICE_CACHE_TTL_S = 300.0  # `catalog sync-stripe` may move a lookup key while the service runs
LOOKUP_KEY_METADATA = "upshift_lookup_key"  # set by sync-stripe; survives a moved lookup key
ACCOUNT_METADATA = "upshift_account_id"  # links a subscription created elsewhere to an account
# A subscription is read with its discounts and their coupons, which its MRR needs.
SUBSCRIPTION_EXPAND = ["discounts.source.coupon"]

Json = dict[str, Any]


class StripeNotConfigured(ValueError):
    """billing_backend=stripe without the settings it needs: the service refuses to start."""


class BillingRejected(Conflict):
    """Stripe refused the request: its state and ours disagree, or the catalog is not synced."""

    code = "billing_rejected"
    title = "Billing provider refused the change"


class InvalidWebhook(Exception):
    """A webhook that is not provably Stripe's (bad, stale or missing signature, or no event)."""

    def __init__(
        self, detail: str, *, code: str = "invalid_signature", field: str = "Stripe-Signature"
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code
        self.field = field


def connect_stripe(settings: Settings, catalog: Catalog) -> StripeBilling:
    """The one StripeClient of the process (API version pinned, retries on), with its caches."""
    if settings.stripe_secret_key is None:
        raise StripeNotConfigured(
            "UPSHIFT_STRIPE_SECRET_KEY is required when UPSHIFT_BILLING_BACKEND=stripe"
        )
    secret = settings.stripe_webhook_secret
    return StripeBilling(
        stripe_client(settings), catalog, secret.get_secret_value() if secret else None
    )


def stripe_client(settings: Settings) -> stripe.StripeClient:
    """A StripeClient from the settings (the CLI uses one on its own, without the caches)."""
    if settings.stripe_secret_key is None:
        raise StripeNotConfigured("UPSHIFT_STRIPE_SECRET_KEY is not set")
    return stripe.StripeClient(
        settings.stripe_secret_key.get_secret_value(),
        stripe_version=STRIPE_API_VERSION,
        max_network_retries=MAX_NETWORK_RETRIES,
        base_addresses={"api": settings.stripe_api_base} if settings.stripe_api_base else None,
        # Stripe's default waits 80 s; a customer is waiting on the other end of an upgrade.
        http_client=stripe.RequestsClient(timeout=30),
    )


def as_json(obj: Any) -> Json:
    """A plain dict of an SDK object (StripeObject subclasses dict but nests its own types)."""
    if isinstance(obj, stripe.StripeObject):
        return obj.to_dict()
    return dict(obj)


def id_of(value: Any) -> str | None:
    """The id of an expandable field, expanded or not."""
    if isinstance(value, dict):
        return str(value["id"])
    return value if isinstance(value, str) else None


def utc(timestamp: int) -> datetime:
    return datetime.fromtimestamp(int(timestamp), UTC)


def unix(moment: datetime) -> int:
    return int(moment.timestamp())


@contextmanager
def stripe_errors(action: str) -> Iterator[None]:
    """Stripe's errors in the domain's words: 402 declined, 409 refused, 503 unreachable."""
    try:
        yield
    except stripe.CardError as exc:
        raise PaymentDeclined(
            exc.user_message or "Your card was declined.", code=exc.code or "card_declined"
        ) from exc
    except stripe.IdempotencyError as exc:
        raise BillingRejected(
            f"Stripe refused to {action}: this request was already sent with other parameters "
            f"({exc.user_message})",
            code="billing_idempotency_conflict",
        ) from exc
    except stripe.InvalidRequestError as exc:
        raise BillingRejected(f"Stripe refused to {action}: {exc.user_message}") from exc
    except (stripe.AuthenticationError, stripe.PermissionError) as exc:
        log.error("Stripe rejected our credentials while trying to %s: %s", action, exc)
        raise BillingUnavailable(f"billing is misconfigured; could not {action}") from exc
    except stripe.RateLimitError as exc:
        # "Too many requests hit the API too quickly. We recommend an exponential backoff of
        # your requests" (docs.stripe.com/error-codes#rate-limit). Not retried here, where a
        # row lock may be held: the caller is told to come back, after Stripe's Retry-After
        # when it sends one. Logged and counted (upshift_problems{code="stripe_rate_limited"}).
        log.warning("Stripe rate limited us while trying to %s", action)
        raise BillingUnavailable(
            f"Stripe is rate limiting; could not {action}",
            retry_after_s=_retry_after(exc),
            code="stripe_rate_limited",
        ) from exc
    except stripe.StripeError as exc:
        # APIConnectionError (after the SDK's retries) and 5xx APIError: the outcome is unknown
        # or nothing happened; a retry with the same idempotency key is safe either way.
        log.warning("Stripe unavailable while trying to %s: %r", action, exc)
        raise BillingUnavailable(f"Stripe could not be reached to {action}; retry later") from exc


def _retry_after(exc: stripe.StripeError, default: int = 5) -> int:
    """Seconds to wait before trying again: the answer's Retry-After when it has a sane one."""
    value = (exc.headers or {}).get("Retry-After") if exc.headers is not None else None
    try:
        seconds = int(str(value))
    except (TypeError, ValueError):
        return default
    return min(max(seconds, 1), 300)


# --- the catalog's prices, as Stripe knows them --------------------------------------------


@dataclass(frozen=True, slots=True)
class CatalogLine:
    """What one catalog price is: its plan line key, whose line (tier or add-on), its interval."""

    lookup_key: str
    key: str  # "base", "seats" or "addon:{key}"
    owner: str  # the tier key (base, seats) or the add-on key
    interval: Interval
    description: str
    # The catalog versions that sell this price (a price unchanged between versions keeps its
    # lookup key, so it stands for several), oldest first.
    versions: tuple[str, ...] = ()


def catalog_lines(catalog: Catalog) -> dict[str, CatalogLine]:
    """Every sellable price of every catalog version by lookup key, described as plan_lines
    describes it, with the versions that sell it."""
    lines: dict[str, CatalogLine] = {}
    for version in catalog.history.versions:
        for tier_key, tier in version.tiers.items():
            for interval in tier.prices:
                widest = Plan(
                    tier_key,
                    interval,
                    tier.seats.max,
                    dict.fromkeys(tier.addons, 1),
                    version.version,
                )
                for line in plan_lines(version, widest):
                    owner = (
                        line.key.removeprefix("addon:")
                        if line.key.startswith("addon:")
                        else tier_key
                    )
                    known = lines.get(line.lookup_key)
                    versions = known.versions if known else ()
                    if version.version not in versions:
                        versions = (*versions, version.version)
                    lines[line.lookup_key] = CatalogLine(
                        line.lookup_key, line.key, owner, interval, line.description, versions
                    )
    return lines


class StripePrices:
    """Stripe price ids by lookup key (resolved in batches, cached) and the way back."""

    def __init__(self, client: stripe.StripeClient, catalog: Catalog) -> None:
        self.client = client
        self.lines = catalog_lines(catalog)
        self._lock = threading.Lock()
        self._ids: dict[str, str] = {}
        self._resolved_at = 0.0
        self._lookup_of_id: dict[str, str | None] = {}

    def use_catalog(self, catalog: Catalog) -> None:
        """Map the lookup keys of every version of `catalog`'s history (one published while the
        process runs); a key not resolved yet is looked up at its first use."""
        lines = catalog_lines(catalog)
        with self._lock:
            self.lines = lines  # swapped whole: a reader holds the old map or the new one

    def price_id(self, lookup_key: str) -> str:
        with self._lock:
            if lookup_key not in self._ids or time.monotonic() - self._resolved_at > (
                PRICE_CACHE_TTL_S
            ):
                self._resolve()
            price_id = self._ids.get(lookup_key)
        if price_id is None:
            raise BillingRejected(
                f"Stripe has no price with lookup_key '{lookup_key}'; run "
                "`upshift catalog sync-stripe --apply`",
                code="stripe_price_missing",
            )
        return price_id

    def _resolve(self) -> None:
        keys = sorted(self.lines)
        found: dict[str, str] = {}
        with stripe_errors("look up the catalog's prices"):
            for start in range(0, len(keys), 10):  # Stripe takes up to 10 lookup keys a call
                batch = keys[start : start + 10]
                prices = self.client.v1.prices.list(params={"lookup_keys": batch, "limit": 10})
                for price in prices.data:
                    if price.lookup_key and price.active:
                        found[price.lookup_key] = price.id
                        self._lookup_of_id[price.id] = price.lookup_key
        self._ids = found
        self._resolved_at = time.monotonic()

    def remember(self, price: Mapping[str, Any]) -> CatalogLine | None:
        """The catalog line of a price object (an item's), remembering its id for invoices."""
        lookup_key = price.get("lookup_key") or (price.get("metadata") or {}).get(
            LOOKUP_KEY_METADATA
        )
        with self._lock:
            self._lookup_of_id[price["id"]] = lookup_key
        return self.lines.get(lookup_key) if lookup_key else None

    def line_of_id(self, price_id: str) -> CatalogLine | None:
        with self._lock:
            known = price_id in self._lookup_of_id
            lookup_key = self._lookup_of_id.get(price_id)
        if not known:
            with stripe_errors("read a price"):
                return self.remember(as_json(self.client.v1.prices.retrieve(price_id)))
        return self.lines.get(lookup_key) if lookup_key else None

    def counterpart(self, line: CatalogLine, interval: Interval) -> str | None:
        """The lookup key of the same line (same tier or add-on) billed every `interval`."""
        for other in self.lines.values():
            if (other.key, other.owner, other.interval) == (line.key, line.owner, interval):
                return other.lookup_key
        return None


# --- a subscription as Upshift sees it -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class RemoteItem:
    id: str
    price_id: str
    quantity: int
    line: CatalogLine | None


@dataclass(frozen=True, slots=True)
class RemoteSubscription:
    """A Stripe subscription mapped onto the catalog; `plan` is None when it maps to no tier."""

    id: str
    customer_id: str
    status: str
    plan: Plan | None
    period: Period
    currency: str
    items: tuple[RemoteItem, ...]
    metadata: Mapping[str, str]
    latest_invoice: str | None
    schedule: str | None
    has_pending_update: bool
    mrr: Money  # what the customer pays a month for it, after forever discounts, before tax
    pending_update_expires_at: datetime | None = None
    # Test mode: the test clock the subscription lives on ("ID of the test clock this
    # subscription belongs to": the SDK's Subscription.test_clock) and its frozen time, the
    # subscription's "now" (docs.stripe.com/api/test_clocks/object). None in live mode.
    test_clock: str | None = None
    frozen_time: datetime | None = None


def subscription_mrr(raw: Json, currency: str) -> Money:
    """Monthly recurring revenue of a Stripe subscription, in its own currency: each item's
    `unit_amount × quantity` normalized to a month (rounded per item, as the catalog's MRR),
    less the subscription's discounts whose coupon lasts `forever`. A `once` or `repeating`
    coupon leaves MRR as it is, and tax is never MRR (Stripe Billing's own rule: "If you apply
    a coupon with a forever duration, the discount will apply to your MRR. If you apply a coupon
    with a finite duration (i.e. once or repeating) to a subscription, your MRR is unaffected",
    support.stripe.com/questions/impact-of-discounts-and-coupons-on-monthly-recurring-revenue-
    mrr-in-billing)."""
    total = 0
    months = Fraction(1)
    for item in raw["items"]["data"]:
        price = item["price"]
        quantity = int(item.get("quantity") or 0)
        recurring = price.get("recurring") or {}
        if not quantity or not recurring or price.get("unit_amount") is None:
            continue
        months = _months(str(recurring["interval"]), int(recurring.get("interval_count") or 1))
        total += _monthly(int(price["unit_amount"]) * quantity, months)
    for discount in raw.get("discounts") or []:
        if not isinstance(discount, dict):
            raise ValueError(f"subscription {raw['id']} was read without its discounts expanded")
        coupon = (discount.get("source") or {}).get("coupon")
        if not isinstance(coupon, dict) or coupon.get("duration") != "forever":
            continue
        if coupon.get("percent_off") is not None:
            total -= percent_of(total, Decimal(str(coupon["percent_off"])))
        elif coupon.get("amount_off") is not None and (
            str(coupon.get("currency") or "").upper() == currency
        ):
            # Taken off each invoice, so off each billing interval.
            total -= _monthly(int(coupon["amount_off"]), months)
    return Money(max(total, 0), currency)


def _months(interval: str, count: int) -> Fraction:
    per_month = {"month": Fraction(1), "year": Fraction(12), "week": Fraction(12, 52)}
    return per_month.get(interval, Fraction(12, 365)) * count


def _monthly(amount: int, months: Fraction) -> int:
    if months.denominator == 1:
        return monthly_from_interval(amount, months.numerator)
    return round_half_away(amount * months.denominator, months.numerator)


def plan_from_items(catalog: Catalog, items: tuple[RemoteItem, ...]) -> Plan | None:
    """Tier and interval from the base item, seats = included + the seat item's quantity,
    add-ons from their items; items at quantity 0 (removed lines, see `item_changes`) count
    as absent."""
    bases = [item for item in items if item.line and item.line.key == "base" and item.quantity]
    if len(bases) != 1:
        return None
    base = bases[0].line
    assert base is not None
    # The version is the one every item's price belongs to; prices shared by several versions
    # leave it open ("": Plan.matches any), and the account keeps its own.
    common = set(base.versions)
    for item in items:
        if item.line is not None and item.quantity:
            common &= set(item.line.versions)
    version = next(iter(common)) if len(common) == 1 else ""
    newest = max(common, key=base.versions.index) if common else base.versions[-1]
    seats = catalog.at_version(newest).tiers[base.owner].seats.included
    addons: dict[str, int] = {}
    for item in items:
        if item.line is None or not item.quantity or item.line.key == "base":
            continue
        if item.line.key == "seats":
            seats += item.quantity
        else:
            addons[item.line.owner] = addons.get(item.line.owner, 0) + item.quantity
    return Plan(
        tier=base.owner, interval=base.interval, seats=seats, addons=addons, version=version
    )


class StripeBilling:
    """Everything that talks to Stripe, built once per process (app.state.stripe)."""

    def __init__(
        self, client: stripe.StripeClient, catalog: Catalog, webhook_secret: str | None
    ) -> None:
        self.client = client
        self.catalog = catalog
        self.prices = StripePrices(client, catalog)
        self.webhook_secret = webhook_secret

    def use_history(self, history: CatalogHistory, version: str | None = None) -> None:
        """Serve the versions of `history` (published while the process runs): its lookup keys
        map to their lines, and subscriptions on any of its versions map to plans. The process's
        catalog becomes `version` (by default the same version as before), linked to the new
        history: a gateway built after this prices targets at any version of it."""
        self.prices.use_catalog(history.latest)
        self.catalog = history.version(version or self.catalog.version)

    def subscription(self, subscription_id: str) -> RemoteSubscription:
        with stripe_errors("read the subscription"):
            raw = self.client.v1.subscriptions.retrieve(
                subscription_id, params={"expand": SUBSCRIPTION_EXPAND}
            )
        return self.remote(as_json(raw))

    def remote(self, raw: Json) -> RemoteSubscription:
        items = tuple(
            RemoteItem(
                item["id"],
                item["price"]["id"],
                int(item.get("quantity") or 0),
                self.prices.remember(item["price"]),
            )
            for item in raw["items"]["data"]
        )
        first = raw["items"]["data"][0] if raw["items"]["data"] else {}
        start = first.get("current_period_start") or raw.get("billing_cycle_anchor") or 0
        end = first.get("current_period_end") or start + 1
        currency = str(raw.get("currency") or self.catalog.currency).upper()
        return RemoteSubscription(
            id=raw["id"],
            customer_id=id_of(raw["customer"]) or "",
            status=raw["status"],
            plan=plan_from_items(self.catalog, items),
            period=Period(utc(start), utc(end)),
            currency=currency,
            items=items,
            metadata=dict(raw.get("metadata") or {}),
            latest_invoice=id_of(raw.get("latest_invoice")),
            schedule=id_of(raw.get("schedule")),
            has_pending_update=raw.get("pending_update") is not None,
            pending_update_expires_at=_pending_expiry(raw.get("pending_update")),
            mrr=subscription_mrr(raw, currency),
            test_clock=id_of(raw.get("test_clock")),
            frozen_time=self._frozen_time(raw.get("test_clock")),
        )

    def _frozen_time(self, test_clock: Any) -> datetime | None:
        """The frozen time of the subscription's test clock (expanded, or read: test mode only,
        so live mode never pays the call); None when it lives on no clock."""
        if test_clock is None:
            return None
        if not isinstance(test_clock, dict):
            with stripe_errors("read the subscription's test clock"):
                test_clock = as_json(self.client.v1.test_helpers.test_clocks.retrieve(test_clock))
        return utc(test_clock["frozen_time"])

    def verify_event(self, payload: bytes, signature: str | None) -> Json:
        """The event, once its signature and timestamp check out; raises InvalidWebhook."""
        if not self.webhook_secret:
            raise InvalidWebhook(
                "no Stripe webhook secret is configured", code="webhook_not_configured"
            )
        try:
            self.client.construct_event(payload, signature, self.webhook_secret)
        except stripe.SignatureVerificationError as exc:
            raise InvalidWebhook(str(exc.user_message or exc)) from None
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            # The signature matched, yet the body is no Stripe event.
            raise InvalidWebhook(f"not a Stripe event: {exc}", code="invalid_event") from None
        # Stored as sent: the SDK's objects carry Decimals that JSON columns cannot hold.
        raw = json.loads(payload)
        data = raw.get("data") if isinstance(raw, dict) else None
        if (
            not isinstance(raw, dict)
            or not isinstance(raw.get("id"), str)
            or not isinstance(raw.get("type"), str)
            or not isinstance(data, dict)
            or not isinstance(data.get("object"), dict)
        ):
            raise InvalidWebhook("the event lacks id, type or data.object", code="invalid_event")
        if raw.get("api_version") != STRIPE_API_VERSION:
            # Stripe renders an event in its endpoint's API version, or the account's default
            # (docs.stripe.com/webhooks/versioning); Upshift reads its own version's shapes only.
            raise InvalidWebhook(
                f"event {raw['id']} is rendered in Stripe API version {raw.get('api_version')}, "
                f"but Upshift reads {STRIPE_API_VERSION}: create the endpoint with `upshift "
                "stripe webhook-endpoint create URL`, which pins it",
                code="unexpected_api_version",
                field="api_version",
            )
        return raw


def _pending_expiry(pending: Any) -> datetime | None:
    expires_at = pending.get("expires_at") if isinstance(pending, dict) else None
    return utc(int(expires_at)) if expires_at else None
