"""In-memory state of the fake Stripe server: stores, clock, events, expand, catalog.

Everything here runs under :attr:`FakeStripeState.lock` (held by the HTTP layer
for the whole request, and by the controller for test hooks).  Billing behaviour
lives in :mod:`tests.fakes.stripe_invoices`, :mod:`tests.fakes.stripe_subscriptions`
and :mod:`tests.fakes.stripe_schedules`; rendering in :mod:`tests.fakes.stripe_render`.
"""

from __future__ import annotations

import copy
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from tests.fakes.stripe_models import (
    Coupon,
    Customer,
    Discount,
    Event,
    Faults,
    IdGenerator,
    Invoice,
    PaymentIntent,
    Price,
    Product,
    Schedule,
    StripeError,
    Subscription,
    TaxRate,
    TestClock,
)
from tests.fakes.stripe_render import EMBEDDED_LINES, Renderer

__all__ = ["DEFAULT_NOW", "FakeStripeState", "merge_metadata", "only"]

Json = dict[str, Any]

DEFAULT_NOW = 1_793_491_200  # 2026-11-01T00:00:00Z
# The account's default API version, older than the SDK's: events for an endpoint created
# without `api_version` are rendered in it ("Events sent to this endpoint will be generated with
# this Stripe Version instead of your account's default Stripe Version": the SDK's
# WebhookEndpointCreateParams.api_version).
ACCOUNT_DEFAULT_API_VERSION = "2025-03-31.basil"


def only(params: Json, allowed: set[str], prefix: str = "") -> None:
    """Reject parameters that Stripe accepts but this fake does not model."""
    for key in params:
        if key not in allowed and key != "expand":
            raise StripeError.unsupported(f"{prefix}[{key}]" if prefix else key)


def merge_metadata(current: dict[str, str], update: Any, param: str = "metadata") -> dict[str, str]:
    """Stripe's metadata update: ``""`` clears everything, ``k=""`` deletes a key."""
    if update == "":
        return {}
    merged = dict(current)
    for key, value in dict(update).items():
        if len(key) > 40:
            raise StripeError.invalid(
                f"Metadata keys can have up to 40 characters (`{key}`).", f"{param}[{key}]"
            )
        if len(value) > 500:
            raise StripeError.invalid(
                f"Metadata values can have up to 500 characters (`{key}`).", f"{param}[{key}]"
            )
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    if len(merged) > 50:
        raise StripeError.invalid("Metadata can have up to 50 keys.", param)
    return merged


class FakeStripeState(Renderer):
    """All objects of one fake Stripe account plus its clock and event log."""

    def __init__(self, api_version: str, now: int = DEFAULT_NOW) -> None:
        self.api_version = api_version
        self.hosted_base = "http://127.0.0.1"  # the server's own address, once it listens
        self.lock = threading.RLock()
        self.ids = IdGenerator()
        self.faults = Faults()
        self.reset(now)

    def reset(self, now: int = DEFAULT_NOW) -> None:
        with self.lock:
            self.now = now
            self.ids.reset()
            self.faults.clear()
            self.customers: dict[str, Customer] = {}
            self.products: dict[str, Product] = {}
            self.prices: dict[str, Price] = {}
            self.subscriptions: dict[str, Subscription] = {}
            self.invoices: dict[str, Invoice] = {}
            self.payment_intents: dict[str, PaymentIntent] = {}
            self.schedules: dict[str, Schedule] = {}
            self.coupons: dict[str, Coupon] = {}
            self.discounts: dict[str, Discount] = {}
            self.tax_rates: dict[str, TaxRate] = {}
            self.test_clocks: dict[str, TestClock] = {}
            self.events: list[Event] = []
            self.webhook_endpoints: dict[str, Json] = {}
            self.account_api_version = ACCOUNT_DEFAULT_API_VERSION
            self.update_counts: Counter[str] = Counter()
            self.request_context: tuple[str | None, str | None] = (None, None)
            self.request_haystacks: list[str] = []
            self.pending_update_raises = False
            self.embedded_lines = EMBEDDED_LINES
            self._invoice_seq = 0

    # ------------------------------------------------------------------ transactions

    _STORES = (
        "customers", "products", "prices", "subscriptions", "invoices", "schedules",
        "coupons", "discounts", "tax_rates", "webhook_endpoints", "update_counts", "_invoice_seq",
        "payment_intents", "test_clocks",
    )  # fmt: skip

    def snapshot(self) -> tuple[dict[str, Any], int]:
        """Copy of all objects, so a failed request can be rolled back like Stripe's."""
        stores = {name: getattr(self, name) for name in self._STORES}
        return copy.deepcopy(stores), len(self.events)

    def restore(self, snap: tuple[dict[str, Any], int]) -> None:
        stores, n_events = snap
        for name, value in stores.items():
            setattr(self, name, value)
        del self.events[n_events:]

    # ------------------------------------------------------------------ lookups

    def customer(self, object_id: str, param: str = "id") -> Customer:
        if object_id not in self.customers:
            raise StripeError.missing("customer", object_id, param)
        return self.customers[object_id]

    def product(self, object_id: str, param: str = "id") -> Product:
        if object_id not in self.products:
            raise StripeError.missing("product", object_id, param)
        return self.products[object_id]

    def price(self, object_id: str, param: str = "id") -> Price:
        if object_id not in self.prices:
            raise StripeError.missing("price", object_id, param)
        return self.prices[object_id]

    def subscription(self, object_id: str, param: str = "id") -> Subscription:
        if object_id not in self.subscriptions:
            raise StripeError.missing("subscription", object_id, param)
        return self.subscriptions[object_id]

    def invoice(self, object_id: str, param: str = "id") -> Invoice:
        if object_id not in self.invoices:
            raise StripeError.missing("invoice", object_id, param)
        return self.invoices[object_id]

    def schedule(self, object_id: str, param: str = "id") -> Schedule:
        if object_id not in self.schedules:
            raise StripeError.missing("subscription schedule", object_id, param)
        return self.schedules[object_id]

    def test_clock(self, object_id: str, param: str = "id") -> TestClock:
        if object_id not in self.test_clocks:
            raise StripeError.missing("test clock", object_id, param)
        return self.test_clocks[object_id]

    def clock_of(self, customer_id: str) -> TestClock | None:
        """The test clock the customer (and so its subscriptions and invoices) belongs to."""
        customer = self.customers.get(customer_id)
        if customer is None or customer.test_clock is None:
            return None
        return self.test_clocks.get(customer.test_clock)

    def clock_id_of(self, customer_id: str) -> str | None:
        clock = self.clock_of(customer_id)
        return None if clock is None else clock.id

    def _customer_of(self, object_id: str) -> str | None:
        if object_id in self.customers:
            return object_id
        for store in (self.subscriptions, self.invoices, self.schedules):
            owned = store.get(object_id)
            if owned is not None:
                return str(owned.customer)
        return None

    @contextmanager
    def on_clock_of(self, object_id: str, params: Json) -> Iterator[None]:
        """Run a request on the time of the objects it concerns: a test clock's frozen time for
        a customer on a clock and what belongs to it ("Time at which all objects belonging to
        this clock are frozen": docs.stripe.com/api/test_clocks/object), the account's own
        time for everything else."""
        clock: TestClock | None = None
        refs = (object_id, *(params.get(k) for k in ("subscription", "from_subscription")))
        for ref in (*refs, params.get("customer")):
            customer = self._customer_of(ref) if isinstance(ref, str) and ref else None
            if customer is not None:
                clock = self.clock_of(customer)
                break
        else:
            named = params.get("test_clock")
            clock = self.test_clocks.get(named) if isinstance(named, str) else None
        if clock is None:
            yield
            return
        outside = self.now
        self.now = clock.frozen_time
        try:
            yield
        finally:
            self.now = outside

    def event(self, object_id: str) -> Event:
        for event in self.events:
            if event.id == object_id:
                return event
        raise StripeError.missing("event", object_id)

    def next_invoice_number(self) -> str:
        self._invoice_seq += 1
        return f"FAKE-{self._invoice_seq:04d}"

    # ------------------------------------------------------------------ events

    def emit(self, event_type: str, obj: Json, previous: Json | None = None) -> Event:
        data: Json = {"object": copy.deepcopy(obj)}
        if previous is not None:
            data["previous_attributes"] = copy.deepcopy(previous)
        request_id, idempotency_key = self.request_context
        event = Event(
            id=self.ids.new("evt"),
            type=event_type,
            created=self.now,
            data=data,
            request_id=request_id,
            idempotency_key=idempotency_key,
        )
        self.events.append(event)
        return event

    @staticmethod
    def diff(before: Json, after: Json) -> Json:
        """Stripe's ``previous_attributes``: old values of the top-level keys that changed."""
        return {k: v for k, v in before.items() if after.get(k) != v}

    # ------------------------------------------------------------------ expand / lists

    def expand(self, obj: Json, paths: list[str]) -> Json:
        for path in paths:
            self._expand_path(obj, path.split("."), path)
        return obj

    def _expand_path(self, node: Any, parts: list[str], full: str) -> None:
        if not parts or node is None:
            return
        if isinstance(node, list):
            for element in node:
                self._expand_path(element, parts, full)
            return
        if not isinstance(node, dict):
            raise StripeError.invalid(f"This property cannot be expanded ({full}).", "expand")
        head, rest = parts[0], parts[1:]
        if node.get("object") == "invoice" and head == "payments" and head not in node:
            # An includable property: rendered only when asked for (the SDK's InvoicePayment
            # docstring: "By expanding the `payments` field on the Invoice resource").
            node[head] = self.render_invoice_payments(self.invoice(node["id"]))
        if node.get("object") == "list" and head == "data":
            self._expand_path(node["data"], rest, full)
            return
        if head not in node:
            raise StripeError.invalid(f"This property cannot be expanded ({full}).", "expand")
        value = node[head]
        if isinstance(value, list) and any(isinstance(v, str) for v in value):
            # A list of expandable ids (a subscription's `discounts`): each one expanded.
            expanded = [self.render_id(v) if isinstance(v, str) else v for v in value]
            if any(v is None for v in expanded):
                raise StripeError.invalid(f"This property cannot be expanded ({full}).", "expand")
            node[head] = value = expanded
        if isinstance(value, str):
            rendered = self.render_id(value)
            if rendered is None:
                raise StripeError.invalid(f"This property cannot be expanded ({full}).", "expand")
            node[head] = value = rendered
        elif value is not None and not isinstance(value, dict | list):
            raise StripeError.invalid(f"This property cannot be expanded ({full}).", "expand")
        self._expand_path(value, rest, full)

    @staticmethod
    def list_response(objects: list[Json], url: str, params: Json) -> Json:
        """Stripe's list envelope, newest first (``limit``/``starting_after``/``ending_before``)."""
        limit = params.get("limit", 10)
        if not 1 <= limit <= 100:
            raise StripeError.invalid(
                "Invalid limit: must be between 1 and 100.", "limit", "parameter_invalid_integer"
            )
        ranked = sorted(enumerate(objects), key=lambda t: (t[1].get("created", 0), t[0]))
        ordered = [o for _, o in reversed(ranked)]
        ids = [o["id"] for o in ordered]
        if "starting_after" in params:
            cursor = params["starting_after"]
            if cursor not in ids:
                raise StripeError.missing("object", cursor, "starting_after")
            ordered = ordered[ids.index(cursor) + 1 :]
        elif "ending_before" in params:
            cursor = params["ending_before"]
            if cursor not in ids:
                raise StripeError.missing("object", cursor, "ending_before")
            ordered = ordered[: ids.index(cursor)][-limit:]
        return {
            "object": "list",
            "data": ordered[:limit],
            "has_more": len(ordered) > limit,
            "url": url,
        }

    # ------------------------------------------------------------------ customers

    def create_customer(self, p: Json) -> Json:
        only(p, {"email", "name", "description", "metadata", "payment_method", "test_clock"})
        # "ID of the test clock to attach to the customer" (CustomerCreateParams.test_clock;
        # docs.stripe.com/billing/testing/test-clocks/api-advanced-usage: "create a customer
        # first, then a subscription for them. Both ... are associated with the simulation").
        clock = self.test_clock(p["test_clock"], "test_clock") if "test_clock" in p else None
        customer = Customer(
            id=self.ids.new("cus"),
            created=self.now,
            email=p.get("email") or None,
            name=p.get("name") or None,
            description=p.get("description") or None,
            metadata=merge_metadata({}, p.get("metadata", {})),
            default_payment_method=p.get("payment_method"),
            test_clock=clock.id if clock else None,
        )
        self.customers[customer.id] = customer
        rendered = self.render_customer(customer)
        self.emit("customer.created", rendered)
        return rendered

    # ------------------------------------------------------------------ webhook endpoints

    def create_webhook_endpoint(self, p: Json) -> Json:
        """docs.stripe.com/api/webhook_endpoints/create: `api_version` fixes the version events
        are rendered in ("You can't change this value after you create the endpoint"); the
        `secret` is "Only returned at creation"."""
        only(p, {"url", "enabled_events", "api_version", "description", "metadata"})
        endpoint_id = self.ids.new("we")
        endpoint = {
            "id": endpoint_id,
            "object": "webhook_endpoint",
            "api_version": p.get("api_version"),
            "application": None,
            "created": self.now,
            "description": p.get("description") or None,
            "enabled_events": list(p["enabled_events"]),
            "livemode": False,
            "metadata": merge_metadata({}, p.get("metadata", {})),
            "secret": None,
            "status": "enabled",
            "url": p["url"],
        }
        self.webhook_endpoints[endpoint_id] = endpoint
        return {**endpoint, "secret": "whsec_" + self.ids.new("sec").split("_", 1)[1]}

    def list_webhook_endpoints(self, p: Json) -> Json:
        only(p, {"limit", "starting_after", "ending_before"})
        objects = [dict(endpoint) for endpoint in self.webhook_endpoints.values()]
        return self.list_response(objects, "/v1/webhook_endpoints", p)

    def endpoint_api_version(self, url: str) -> str | None:
        """The version events for the endpoint at `url` are rendered in; None if there is none."""
        for endpoint in self.webhook_endpoints.values():
            if endpoint["url"] == url:
                return endpoint["api_version"] or self.account_api_version
        return None

    def update_customer(self, object_id: str, p: Json) -> Json:
        customer = self.customer(object_id)
        only(p, {"email", "name", "description", "metadata", "balance"})
        before = self.render_customer(customer)
        for key in ("email", "name", "description"):
            if key in p:
                setattr(customer, key, p[key] or None)
        if "balance" in p:
            # "A negative amount represents a credit that decreases the amount due on an
            # invoice" (the SDK's CustomerUpdateParams.balance; docs.stripe.com/billing/customer/
            # balance).
            customer.balance = p["balance"]
        if "metadata" in p:
            customer.metadata = merge_metadata(customer.metadata, p["metadata"])
        after = self.render_customer(customer)
        self.emit("customer.updated", after, self.diff(before, after))
        return after

    # ------------------------------------------------------------------ coupons, tax rates

    def create_coupon(self, p: Json) -> Json:
        """docs.stripe.com/api/coupons/create: exactly one of `percent_off` (0 < p <= 100) and
        `amount_off` (with `currency`); `duration_in_months` only for `repeating`."""
        only(
            p,
            {"id", "percent_off", "amount_off", "currency", "duration", "duration_in_months",
             "name", "metadata"},
        )  # fmt: skip
        if ("percent_off" in p) == ("amount_off" in p):
            raise StripeError.invalid(
                "You must pass exactly one of `percent_off` or `amount_off`.", "percent_off"
            )
        percent = None
        if "percent_off" in p:
            percent = Decimal(str(p["percent_off"]))
            if not 0 < percent <= 100:
                raise StripeError.invalid(
                    "percent_off must be greater than 0 and at most 100.", "percent_off"
                )
        if "amount_off" in p and ("currency" not in p or p["amount_off"] <= 0):
            raise StripeError.invalid(
                "An `amount_off` coupon needs a positive amount and a `currency`.", "currency"
            )
        duration = p.get("duration", "once")
        months = p.get("duration_in_months")
        if (duration == "repeating") != (months is not None):
            raise StripeError.invalid(
                "`duration_in_months` is required with, and only with, `duration=repeating`.",
                "duration_in_months",
            )
        coupon_id = p.get("id") or self.ids.new("co")
        if coupon_id in self.coupons:
            raise StripeError.invalid("Coupon already exists.", "id", "resource_already_exists")
        coupon = Coupon(
            id=coupon_id,
            created=self.now,
            duration=duration,
            percent_off=percent,
            amount_off=p.get("amount_off"),
            currency=p["currency"].lower() if "currency" in p else None,
            duration_in_months=months,
            name=p.get("name") or None,
            metadata=merge_metadata({}, p.get("metadata", {})),
        )
        self.coupons[coupon.id] = coupon
        return self.render_coupon(coupon)

    def create_tax_rate(self, p: Json) -> Json:
        """docs.stripe.com/api/tax_rates/create; only exclusive rates are modelled."""
        only(
            p,
            {"display_name", "percentage", "inclusive", "country", "jurisdiction",
             "description", "metadata", "active"},
        )  # fmt: skip
        if p.get("inclusive"):
            raise StripeError.unsupported("inclusive")
        rate = TaxRate(
            id=self.ids.new("txr"),
            created=self.now,
            display_name=p["display_name"],
            percentage=Decimal(str(p["percentage"])),
            active=p.get("active", True),
            country=p.get("country"),
            jurisdiction=p.get("jurisdiction"),
            description=p.get("description"),
            metadata=merge_metadata({}, p.get("metadata", {})),
        )
        self.tax_rates[rate.id] = rate
        return self.render_tax_rate(rate)

    def coupon(self, object_id: str, param: str = "id") -> Coupon:
        if object_id not in self.coupons:
            raise StripeError.missing("coupon", object_id, param)
        return self.coupons[object_id]

    def tax_rate(self, object_id: str, param: str = "id") -> TaxRate:
        if object_id not in self.tax_rates:
            raise StripeError.missing("tax_rate", object_id, param)
        return self.tax_rates[object_id]

    # ------------------------------------------------------------------ products

    def create_product(self, p: Json) -> Json:
        only(p, {"name", "active", "description", "metadata", "id"})
        product_id = p.get("id") or self.ids.new("prod")
        if product_id in self.products:
            raise StripeError.invalid(
                f"Product already exists: {product_id}", "id", "resource_already_exists"
            )
        product = Product(
            id=product_id,
            created=self.now,
            updated=self.now,
            name=p["name"],
            active=p.get("active", True),
            description=p.get("description") or None,
            metadata=merge_metadata({}, p.get("metadata", {})),
        )
        self.products[product.id] = product
        rendered = self.render_product(product)
        self.emit("product.created", rendered)
        return rendered

    def update_product(self, object_id: str, p: Json) -> Json:
        product = self.product(object_id)
        only(p, {"name", "active", "description", "metadata", "default_price"})
        before = self.render_product(product)
        if "name" in p:
            product.name = p["name"]
        if "active" in p:
            product.active = p["active"]
        if "description" in p:
            product.description = p["description"] or None
        if "default_price" in p:
            price = self.price(p["default_price"], "default_price")
            if price.product != product.id:
                raise StripeError.invalid(
                    "The default price must belong to this product.", "default_price"
                )
            product.default_price = price.id
        if "metadata" in p:
            product.metadata = merge_metadata(product.metadata, p["metadata"])
        product.updated = self.now
        after = self.render_product(product)
        self.emit("product.updated", after, self.diff(before, after))
        return after

    def list_products(self, p: Json) -> Json:
        only(p, {"active", "ids", "limit", "starting_after", "ending_before"})
        objects = list(self.products.values())
        if "ids" in p:
            wanted = set(p["ids"])
            objects = [o for o in objects if o.id in wanted]
        if "active" in p:
            objects = [o for o in objects if o.active == p["active"]]
        return self.list_response([self.render_product(o) for o in objects], "/v1/products", p)

    # ------------------------------------------------------------------ prices

    def _take_lookup_key(self, key: str, transfer: bool, owner: str | None, param: str) -> None:
        holder = next(
            (pr for pr in self.prices.values() if pr.lookup_key == key and pr.id != owner), None
        )
        if holder is None:
            return
        if not transfer:
            raise StripeError.invalid(
                f"A price (`{holder.id}`) already uses that lookup key. To transfer the lookup "
                "key to this price, set `transfer_lookup_key` to true.",
                param,
                "lookup_key_already_exists",
            )
        before = self.render_price(holder)
        holder.lookup_key = None
        after = self.render_price(holder)
        self.emit("price.updated", after, self.diff(before, after))

    def create_price(self, p: Json) -> Json:
        only(
            p,
            {
                "currency", "unit_amount", "product", "product_data", "recurring", "lookup_key",
                "transfer_lookup_key", "nickname", "metadata", "active", "tax_behavior",
            },
        )  # fmt: skip
        if "unit_amount" not in p:
            raise StripeError.invalid(
                "Missing required param: unit_amount.", "unit_amount", "parameter_missing"
            )
        if p["unit_amount"] < 0:
            raise StripeError.invalid(
                "This value must be greater than or equal to 0.",
                "unit_amount",
                "parameter_invalid_integer",
            )
        if ("product" in p) == ("product_data" in p):
            raise StripeError.invalid(
                "You must specify exactly one of `product` or `product_data`.", "product"
            )
        if "product" in p:
            product_id = self.product(p["product"], "product").id
        else:
            data = p["product_data"]
            only(data, {"name", "metadata", "active"}, "product_data")
            product_id = self.create_product(data)["id"]
        interval: str | None = None
        interval_count = 1
        if "recurring" in p:
            recurring = p["recurring"]
            only(recurring, {"interval", "interval_count", "usage_type"}, "recurring")
            if recurring.get("usage_type", "licensed") != "licensed":
                raise StripeError.unsupported("recurring[usage_type]")
            interval = recurring["interval"]
            interval_count = recurring.get("interval_count", 1)
            limits = {"day": 1095, "week": 156, "month": 36, "year": 3}
            if not 1 <= interval_count <= limits[interval]:
                raise StripeError.invalid(
                    "The maximum billing interval is three years.",
                    "recurring[interval_count]",
                    "parameter_invalid_integer",
                )
        lookup_key = p.get("lookup_key") or None
        if lookup_key is not None:
            self._take_lookup_key(
                lookup_key, p.get("transfer_lookup_key", False), None, "lookup_key"
            )
        elif p.get("transfer_lookup_key"):
            raise StripeError.invalid(
                "`transfer_lookup_key` requires `lookup_key`.", "transfer_lookup_key"
            )
        price = Price(
            id=self.ids.new("price"),
            created=self.now,
            product=product_id,
            currency=p["currency"].lower(),
            unit_amount=p["unit_amount"],
            interval=interval,
            interval_count=interval_count,
            active=p.get("active", True),
            lookup_key=lookup_key,
            nickname=p.get("nickname") or None,
            metadata=merge_metadata({}, p.get("metadata", {})),
            tax_behavior=p.get("tax_behavior", "unspecified"),
        )
        self.prices[price.id] = price
        rendered = self.render_price(price)
        self.emit("price.created", rendered)
        return rendered

    def update_price(self, object_id: str, p: Json) -> Json:
        price = self.price(object_id)
        only(p, {"active", "lookup_key", "transfer_lookup_key", "metadata", "nickname"})
        before = self.render_price(price)
        if "lookup_key" in p:
            key = p["lookup_key"] or None
            if key is not None:
                self._take_lookup_key(
                    key, p.get("transfer_lookup_key", False), price.id, "lookup_key"
                )
            price.lookup_key = key
        elif p.get("transfer_lookup_key"):
            raise StripeError.invalid(
                "`transfer_lookup_key` requires `lookup_key`.", "transfer_lookup_key"
            )
        if "active" in p:
            price.active = p["active"]
        if "nickname" in p:
            price.nickname = p["nickname"] or None
        if "metadata" in p:
            price.metadata = merge_metadata(price.metadata, p["metadata"])
        after = self.render_price(price)
        self.emit("price.updated", after, self.diff(before, after))
        return after

    def list_prices(self, p: Json) -> Json:
        only(
            p,
            {"active", "lookup_keys", "product", "currency", "type", "recurring", "limit",
             "starting_after", "ending_before"},
        )  # fmt: skip
        objects = list(self.prices.values())
        if "lookup_keys" in p:
            if len(p["lookup_keys"]) > 10:
                raise StripeError.invalid(
                    "You may only specify up to 10 lookup keys.", "lookup_keys"
                )
            wanted = set(p["lookup_keys"])
            objects = [o for o in objects if o.lookup_key in wanted]
        if "active" in p:
            objects = [o for o in objects if o.active == p["active"]]
        if "product" in p:
            objects = [o for o in objects if o.product == p["product"]]
        if "currency" in p:
            objects = [o for o in objects if o.currency == p["currency"].lower()]
        if "type" in p:
            want_recurring = p["type"] == "recurring"
            objects = [o for o in objects if (o.interval is not None) == want_recurring]
        if "recurring" in p:
            only(p["recurring"], {"interval"}, "recurring")
            if "interval" in p["recurring"]:
                objects = [o for o in objects if o.interval == p["recurring"]["interval"]]
        return self.list_response([self.render_price(o) for o in objects], "/v1/prices", p)
