"""Every object the Stripe double renders has the shape the SDK's types give it.

The SDK (stripe-python, generated from Stripe's OpenAPI spec) annotates each field of each object:
a field that is not `Optional` is required and never null; a field that is `Optional` may be
null or left out. So the double may not render a field the type lacks, leave out or null a
required one, nor nest an object of the wrong shape: checked recursively, lists and expanded
objects included, for every object a subscription's life makes (events too), so the double
cannot drift from Stripe again."""

from __future__ import annotations

import importlib
import typing
from typing import Any

import pytest
import stripe
from stripe._list_object import ListObject
from stripe._object_classes import OBJECT_CLASSES
from stripe._stripe_object import StripeObject

from tests.fakes.stripe_server import FakeStripe

Json = dict[str, Any]


def _class_of(kind: str, default: type | None = None) -> type:
    """The SDK's class for an `object` value (OBJECT_CLASSES names its module and class)."""
    named = OBJECT_CLASSES.get(kind)
    if named is None:
        assert default is not None, f"the SDK has no object {kind!r}"
        return default
    module, name = named
    return getattr(importlib.import_module(module), name)


def _fields(cls: type) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass in (StripeObject, dict, object):
            continue
        for name, annotation in getattr(klass, "__annotations__", {}).items():
            if not name.startswith("_") and name != "OBJECT_NAME":
                found[name] = annotation
    return found


def _nullable(annotation: Any) -> tuple[bool, Any]:
    """(whether None is allowed, the type without None)."""
    if typing.get_origin(annotation) is typing.Union:
        args = typing.get_args(annotation)
        rest = [arg for arg in args if arg is not type(None)]
        inner = rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]  # noqa: UP007
        return len(rest) < len(args), inner
    return False, annotation


def _resolve(annotation: Any) -> type | None:
    if isinstance(annotation, typing.ForwardRef):
        annotation = getattr(stripe, annotation.__forward_arg__, None)
    if isinstance(annotation, type) and issubclass(annotation, StripeObject):
        return annotation
    return None


def check(raw: Json, cls: type, path: str, problems: list[str]) -> None:
    fields = _fields(cls)
    for key in raw:
        if key not in fields:
            problems.append(f"{path}.{key}: rendered, but {cls.__qualname__} has no such field")
    for key, annotation in fields.items():
        nullable, inner = _nullable(annotation)
        if key not in raw or raw[key] is None:
            if not nullable:
                state = "missing" if key not in raw else "null"
                problems.append(f"{path}.{key}: required by {cls.__qualname__}, {state}")
            continue
        _descend(raw[key], inner, f"{path}.{key}", problems)


def _descend(value: Any, annotation: Any, path: str, problems: list[str]) -> None:
    origin = typing.get_origin(annotation)
    if origin is typing.Union:  # an expandable field: an id, or the object when expanded
        if isinstance(value, dict):
            for arg in typing.get_args(annotation):
                target = _resolve(arg)
                if target is not None:
                    check(value, _class_of(value.get("object", ""), target), path, problems)
                    return
        return
    if origin is list:
        (arg,) = typing.get_args(annotation)
        for index, item in enumerate(value):
            _descend(item, arg, f"{path}[{index}]", problems)
        return
    if isinstance(origin, type) and issubclass(origin, ListObject):
        for key in ("object", "data", "has_more", "url"):
            if key not in value:
                problems.append(f"{path}.{key}: a list without {key}")
        (arg,) = typing.get_args(annotation)
        for index, item in enumerate(value.get("data", [])):
            _descend(item, arg, f"{path}.data[{index}]", problems)
        return
    target = _resolve(annotation)
    if target is not None and isinstance(value, dict) and _fields(target):
        check(value, target, path, problems)


def _life_of_a_subscription(fake: FakeStripe) -> list[Json]:
    """Every kind of object an upgrade service meets, made through the SDK."""
    client = fake.client()
    customer = client.v1.customers.create(params={"email": "shape@example.com"})
    product = client.v1.products.create(params={"name": "Growth"})
    base, seat = (
        client.v1.prices.create(
            params={
                "product": product.id,
                "unit_amount": amount,
                "currency": "usd",
                "recurring": {"interval": "month"},
                "lookup_key": key,
            }
        )
        for amount, key in ((9_900, "shape_base"), (1_500, "shape_seat"))
    )
    sub = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": base.id}, {"price": seat.id}]}
    )
    # A coupon and a tax rate, so every invoice from here on shows discounts and taxes.
    coupon = client.v1.coupons.create(params={"percent_off": 10, "duration": "forever"})
    tax_rate = client.v1.tax_rates.create(
        params={"display_name": "VAT", "percentage": 20.0, "inclusive": False}
    )
    discounted = client.v1.subscriptions.update(
        sub.id,
        params={
            "discounts": [{"coupon": coupon.id}],
            "default_tax_rates": [tax_rate.id],
            "expand": ["discounts.source.coupon"],
        },
    )
    client.v1.customers.update(customer.id, params={"balance": -500})
    fake.advance(10 * 86_400)
    items = client.v1.subscriptions.retrieve(sub.id)["items"].data
    changed = client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": items[1].id, "quantity": 4}],
            "proration_behavior": "always_invoice",
            "expand": ["latest_invoice"],
        },
    )
    fake.fail_next(sub.id, "card_declined")
    pending = client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": items[1].id, "quantity": 6}],
            "proration_behavior": "always_invoice",
            "payment_behavior": "pending_if_incomplete",
            "metadata": {"upshift_change": "seats-6"},
        },
    )
    preview = client.v1.invoices.create_preview(
        params={
            "subscription": sub.id,
            "subscription_details": {
                "items": [{"id": items[1].id, "quantity": 8}],
                "proration_behavior": "always_invoice",
            },
        }
    )
    schedule = client.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    phase = schedule.phases[0]
    schedule = client.v1.subscription_schedules.update(
        schedule.id,
        params={
            "phases": [
                {
                    "start_date": phase.start_date,
                    "end_date": phase.end_date,
                    "items": [{"price": i.price, "quantity": i.quantity} for i in phase["items"]],
                    "discounts": [{"coupon": "shape-10"}],
                    "automatic_tax": {"enabled": True},
                    "metadata": {"deal": "shape"},
                },
                {"items": [{"price": base.id, "quantity": 1}]},
            ]
        },
    )
    endpoint = client.v1.webhook_endpoints.create(
        params={"url": "https://shape.example.com/hook", "enabled_events": ["*"]}
    )
    lines = client.v1.invoices.line_items.list(changed.latest_invoice.id)
    objects = [
        customer.to_dict(),
        coupon.to_dict(),
        tax_rate.to_dict(),
        discounted.to_dict(),
        discounted.discounts[0].to_dict(),  # type: ignore[union-attr]
        product.to_dict(),
        base.to_dict(),
        changed.to_dict(),
        pending.to_dict(),
        preview.to_dict(),
        schedule.to_dict(),
        client.v1.subscription_schedules.release(schedule.id).to_dict(),
        endpoint.to_dict(),
        *(line.to_dict() for line in lines.data),
    ]
    fake.advance(40 * 86_400)  # a renewal, its invoice and events
    objects.append(client.v1.subscriptions.retrieve(sub.id).to_dict())
    objects.extend(event.to_dict() for event in client.v1.events.list(params={"limit": 100}).data)
    return objects


def _life_on_a_test_clock(fake: FakeStripe) -> list[Json]:
    """A customer on a test clock, its subscription renewed by advancing the clock: the clock
    as created, advancing and ready, what belongs to it, and the events on the way."""
    client = fake.client()
    clock = client.v1.test_helpers.test_clocks.create(
        params={"frozen_time": fake.now - 20 * 86_400, "name": "shape"}
    )
    customer = client.v1.customers.create(params={"test_clock": clock.id})
    product = client.v1.products.create(params={"name": "Clocked"})
    price = client.v1.prices.create(
        params={
            "product": product.id,
            "unit_amount": 5_000,
            "currency": "usd",
            "recurring": {"interval": "month"},
        }
    )
    sub = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": price.id}]}
    )
    advancing = client.v1.test_helpers.test_clocks.advance(
        clock.id, params={"frozen_time": clock.frozen_time + 35 * 86_400}
    )
    renewed = client.v1.subscriptions.retrieve(sub.id, params={"expand": ["test_clock"]})
    events = [
        event
        for event in client.v1.events.list(params={"limit": 100}).auto_paging_iter()
        if clock.id in (event.data.object.to_dict().get(key) for key in ("id", "test_clock"))
    ]
    assert {event.type for event in events} >= {
        "test_helpers.test_clock.advancing",
        "test_helpers.test_clock.ready",
        "customer.subscription.updated",  # the renewal on the clock
        "invoice.paid",
    }
    return [
        clock.to_dict(),
        customer.to_dict(),
        sub.to_dict(),
        advancing.to_dict(),
        client.v1.test_helpers.test_clocks.retrieve(clock.id).to_dict(),
        renewed.to_dict(),
        client.v1.invoices.retrieve(renewed.latest_invoice).to_dict(),  # type: ignore[arg-type]
        *(event.to_dict() for event in events),
    ]


def test_every_rendered_object_has_the_sdks_shape(fake_stripe: FakeStripe) -> None:
    problems: list[str] = []
    seen: set[str] = set()
    lives = _life_of_a_subscription(fake_stripe) + _life_on_a_test_clock(fake_stripe)
    for raw in lives:
        kind = raw["object"]
        seen.add(kind)
        check(raw, _class_of(kind), kind, problems)
        if kind == "event":
            inner = raw["data"]["object"]
            seen.add(f"event:{inner['object']}")
            check(inner, _class_of(inner["object"]), f"event.{raw['type']}", problems)
    assert not problems, "\n".join(sorted(set(problems)))
    assert seen >= {
        "customer",
        "product",
        "price",
        "subscription",
        "invoice",
        "line_item",
        "subscription_schedule",
        "webhook_endpoint",
        "event",
        "event:subscription",
        "event:invoice",
        "coupon",
        "tax_rate",
        "discount",
        "test_helpers.test_clock",
        "event:test_helpers.test_clock",
    }, seen


def test_the_invoices_show_the_discount_and_the_tax(fake_stripe: FakeStripe) -> None:
    """The life above did reach invoices with discounts and taxes (else the shapes of those
    fields were never checked)."""
    objects = _life_of_a_subscription(fake_stripe)
    invoices = [raw for raw in objects if raw["object"] == "invoice"] + [
        raw["data"]["object"]
        for raw in objects
        if raw["object"] == "event" and raw["data"]["object"]["object"] == "invoice"
    ]
    assert any(raw["total_discount_amounts"] for raw in invoices)
    assert any(raw["total_taxes"] for raw in invoices)
    assert any(raw["starting_balance"] < 0 for raw in invoices)


def test_a_pending_update_keeps_its_metadata_until_it_is_paid(fake_stripe: FakeStripe) -> None:
    """Since 2026-05-27.dahlia a pending update takes `metadata`, kept in
    pending_update.metadata and merged into the subscription's when the update applies
    (docs.stripe.com/changelog/dahlia/2026-05-27/pending-subscription-update-metadata)."""
    client = fake_stripe.client()
    customer, price = _customer_and_price(client, "usd")
    sub = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": price.id}], "metadata": {"a": "1"}}
    )
    item = sub["items"].data[0]
    fake_stripe.fail_next(sub.id, "card_declined")
    pending = client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": item.id, "quantity": 3}],
            "proration_behavior": "always_invoice",
            "payment_behavior": "pending_if_incomplete",
            "metadata": {"b": "2"},
        },
    )
    assert pending.pending_update.metadata.to_dict() == {"b": "2"}
    assert pending.metadata.to_dict() == {"a": "1"}
    client.v1.invoices.pay(pending.latest_invoice)
    applied = client.v1.subscriptions.retrieve(sub.id)
    assert applied.pending_update is None
    assert applied.metadata.to_dict() == {"a": "1", "b": "2"}
    assert applied["items"].data[0].quantity == 3


def test_a_payment_waiting_for_authentication_has_the_sdks_shape(fake_stripe: FakeStripe) -> None:
    """The objects of a change whose payment needs the customer's 3-D Secure step: the open
    invoice with its payments and PaymentIntent expanded (`requires_action`), and the same
    after the customer completed it (`succeeded`, invoice paid)."""
    client = fake_stripe.client()
    customer, price = _customer_and_price(client, "eur")
    sub = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": price.id}]}
    )
    fake_stripe.require_authentication(customer.id)
    fake_stripe.advance(10 * 86_400)
    expand = ["latest_invoice.payments.data.payment.payment_intent"]
    waiting = client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": sub["items"].data[0].id, "quantity": 3}],
            "proration_behavior": "always_invoice",
            "payment_behavior": "pending_if_incomplete",
            "expand": expand,
        },
    )
    invoice = waiting.latest_invoice
    intent = invoice.payments.data[0].payment.payment_intent
    assert (invoice.status, intent.status, intent.next_action.type) == (
        "open",
        "requires_action",
        "use_stripe_sdk",
    )
    assert waiting.pending_update is not None and invoice.hosted_invoice_url
    with pytest.raises(stripe.CardError, match="requires additional user action"):
        client.v1.invoices.pay(invoice.id)  # off session: the customer must act
    fake_stripe.complete_authentication(invoice.id)
    paid = client.v1.invoices.retrieve(
        invoice.id, params={"expand": ["payments.data.payment.payment_intent"]}
    )
    assert paid.payments.data[0].payment.payment_intent.status == "succeeded"
    events = client.v1.events.list(params={"type": "invoice.payment_action_required"}).data
    assert len(events) == 2  # the change's attempt and the off-session one, each waiting
    problems: list[str] = []
    for raw in (waiting.to_dict(), paid.to_dict(), events[0].to_dict()):
        check(raw, _class_of(raw["object"]), raw["object"], problems)
    assert not problems, "\n".join(sorted(set(problems)))


def _customer_and_price(client: stripe.StripeClient, currency: str) -> tuple[Any, Any]:
    """A customer and a monthly seat price of 10.00 in `currency`."""
    customer = client.v1.customers.create(params={"email": f"{currency}@example.com"})
    product = client.v1.products.create(params={"name": "Seats"})
    price = client.v1.prices.create(
        params={
            "product": product.id,
            "unit_amount": 1_000,
            "currency": currency,
            "recurring": {"interval": "month"},
        }
    )
    return customer, price
