"""Rendering of the fake Stripe server's objects in the current API shape.

Shapes follow the stripe SDK 16.x resource classes (``stripe/_subscription.py``,
``_subscription_item.py``, ``_invoice.py``, ``_invoice_line_item.py``, ``_price.py``
...) for API version ``2026-10-28.endive``: billing periods live on subscription
*items*, invoice lines carry ``parent.subscription_item_details`` and
``pricing.price_details``, ``billing_mode`` is ``flexible``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests.fakes.stripe_models import (
    Coupon,
    Customer,
    Discount,
    Invoice,
    Line,
    PaymentIntent,
    Price,
    Product,
    Schedule,
    SubItem,
    Subscription,
    TaxRate,
    TestClock,
)

__all__ = ["Renderer"]

Json = dict[str, Any]

_FLEXIBLE = {
    "flexible": {"proration_discounts": "included"},
    "type": "flexible",
    "updated_at": None,
}


def _decimal_str(value: Decimal) -> str:
    text = format(value.quantize(Decimal("0.000000000001")), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


# An invoice embeds the first handful of its lines; "There is also a URL where you can retrieve
# the full (paginated) list of line items" (docs.stripe.com/api/invoices/invoice_lines, the
# SDK's InvoiceLineItemService.list docstring). The page is the list default, 10.
EMBEDDED_LINES = 10


class Renderer:
    """Mixin of :class:`~tests.fakes.stripe_state.FakeStripeState`: objects -> API JSON."""

    customers: dict[str, Customer]
    products: dict[str, Product]
    prices: dict[str, Price]
    subscriptions: dict[str, Subscription]
    invoices: dict[str, Invoice]
    schedules: dict[str, Schedule]
    payment_intents: dict[str, PaymentIntent]
    hosted_base: str
    coupons: dict[str, Coupon]
    discounts: dict[str, Discount]
    tax_rates: dict[str, TaxRate]

    def render_coupon(self, c: Coupon) -> Json:
        return {
            "id": c.id,
            "object": "coupon",
            "amount_off": c.amount_off,
            "applies_to": None,
            "created": c.created,
            "currency": c.currency,
            "currency_options": None,
            "duration": c.duration,
            "duration_in_months": c.duration_in_months,
            "livemode": False,
            "max_redemptions": None,
            "metadata": dict(c.metadata),
            "name": c.name,
            "percent_off": float(c.percent_off) if c.percent_off is not None else None,
            "redeem_by": None,
            "times_redeemed": c.times_redeemed,
            "valid": True,
        }

    def render_discount(self, d: Discount) -> Json:
        return {
            "id": d.id,
            "object": "discount",
            "checkout_session": None,
            "customer": d.customer,
            "customer_account": None,
            "end": d.end,
            "invoice": None,
            "invoice_item": None,
            "promotion_code": None,
            "source": {"coupon": d.coupon, "type": "coupon"},
            "start": d.start,
            "subscription": d.subscription,
            "subscription_item": None,
        }

    def render_tax_rate(self, t: TaxRate) -> Json:
        return {
            "id": t.id,
            "object": "tax_rate",
            "active": t.active,
            "country": t.country,
            "created": t.created,
            "description": t.description,
            "display_name": t.display_name,
            "effective_percentage": float(t.percentage),
            "flat_amount": None,
            "inclusive": t.inclusive,
            "jurisdiction": t.jurisdiction,
            "jurisdiction_level": None,
            "livemode": False,
            "metadata": dict(t.metadata),
            "percentage": float(t.percentage),
            "rate_type": "percentage",
            "state": None,
            "tax_type": None,
        }

    test_clocks: dict[str, TestClock]

    def _clock_of(self, customer_id: str) -> str | None:
        """A subscription, invoice or schedule belongs to its customer's test clock."""
        customer = self.customers.get(customer_id)
        return customer.test_clock if customer is not None else None

    def render_test_clock(self, c: TestClock) -> Json:
        """docs.stripe.com/api/test_clocks/object; `deletes_after` is a week after `created`,
        as in the API reference's example (1680112806 -> 1680717606). While it advances,
        `status_details.advancing.target_frozen_time` is "The `frozen_time` that the Test Clock
        is advancing towards" (the SDK's TestClock.StatusDetails)."""
        details: Json = {}
        if c.advancing_to is not None:
            details["advancing"] = {"target_frozen_time": c.advancing_to}
        return {
            "id": c.id,
            "object": "test_helpers.test_clock",
            "created": c.created,
            "deletes_after": c.created + 7 * 86_400,
            "frozen_time": c.frozen_time,
            "livemode": False,
            "name": c.name,
            "status": c.status,
            "status_details": details,
        }

    def render_customer(self, c: Customer) -> Json:
        return {
            "id": c.id,
            "object": "customer",
            "address": None,
            "balance": c.balance,
            "created": c.created,
            "currency": None,
            "default_source": None,
            "delinquent": False,
            "description": c.description,
            "discount": None,
            "email": c.email,
            "invoice_prefix": c.id[-8:].upper(),
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": c.default_payment_method,
                "footer": None,
                "rendering_options": None,
            },
            "livemode": False,
            "metadata": dict(c.metadata),
            "name": c.name,
            "next_invoice_sequence": 1,
            "phone": None,
            "preferred_locales": [],
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": c.test_clock,
        }

    def render_product(self, p: Product) -> Json:
        return {
            "id": p.id,
            "object": "product",
            "active": p.active,
            "created": p.created,
            "default_price": p.default_price,
            "description": p.description,
            "images": [],
            "livemode": False,
            "marketing_features": [],
            "metadata": dict(p.metadata),
            "name": p.name,
            "package_dimensions": None,
            "shippable": None,
            "statement_descriptor": None,
            "tax_code": None,
            "type": "service",
            "unit_label": None,
            "updated": p.updated,
            "url": None,
        }

    def render_price(self, p: Price) -> Json:
        recurring = None
        if p.interval is not None:
            recurring = {
                "interval": p.interval,
                "interval_count": p.interval_count,
                "meter": None,
                "trial_period_days": None,
                "usage_type": "licensed",
            }
        return {
            "id": p.id,
            "object": "price",
            "active": p.active,
            "billing_scheme": "per_unit",
            "created": p.created,
            "currency": p.currency,
            "custom_unit_amount": None,
            "livemode": False,
            "lookup_key": p.lookup_key,
            "metadata": dict(p.metadata),
            "nickname": p.nickname,
            "product": p.product,
            "recurring": recurring,
            "tax_behavior": p.tax_behavior,
            "tiers_mode": None,
            "transform_quantity": None,
            "type": "recurring" if recurring else "one_time",
            "unit_amount": p.unit_amount,
            "unit_amount_decimal": str(p.unit_amount),
        }

    def render_plan(self, p: Price) -> Json:
        return {
            "id": p.id,
            "object": "plan",
            "active": p.active,
            "amount": p.unit_amount,
            "amount_decimal": str(p.unit_amount),
            "billing_scheme": "per_unit",
            "created": p.created,
            "currency": p.currency,
            "interval": p.interval,
            "interval_count": p.interval_count,
            "livemode": False,
            "metadata": dict(p.metadata),
            "meter": None,
            "nickname": p.nickname,
            "product": p.product,
            "tiers_mode": None,
            "transform_usage": None,
            "trial_period_days": None,
            "usage_type": "licensed",
        }

    def render_item(self, sub: Subscription, item: SubItem) -> Json:
        price = self.prices[item.price]
        return {
            "id": item.id,
            "object": "subscription_item",
            "billing_thresholds": None,
            "created": item.created,
            "current_period_end": sub.period_end,
            "current_period_start": sub.period_start,
            "discounts": [],
            "metadata": dict(item.metadata),
            "plan": self.render_plan(price),
            "price": self.render_price(price),
            "quantity": item.quantity,
            "subscription": sub.id,
            "tax_rates": [],
        }

    def render_subscription(self, s: Subscription) -> Json:
        pending = None
        if s.pending_update is not None:
            pu = s.pending_update
            pending = {
                "billing_cycle_anchor": pu.period[0] if pu.period else None,
                "cancel_at_period_end": None,
                "discount": None,
                "discounts": None,
                "expires_at": pu.expires_at,
                "metadata": dict(pu.metadata) if pu.metadata is not None else None,
                "subscription_items": [
                    self.render_item(s, it) for it in pu.items if it.id in pu.changed_items
                ],
                "trial_end": None,
                "trial_from_plan": None,
            }
        return {
            "id": s.id,
            "object": "subscription",
            "application": None,
            "application_fee_percent": None,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
            "billing_cycle_anchor": s.anchor,
            "billing_cycle_anchor_config": None,
            # Required by the SDK's Subscription ("Billing schedules for this subscription");
            # the fake never makes one, so it is always empty.
            "billing_schedules": [],
            "billing_mode": dict(_FLEXIBLE),
            "billing_thresholds": None,
            "cancel_at": s.period_end if s.cancel_at_period_end else None,
            "cancel_at_period_end": s.cancel_at_period_end,
            "canceled_at": s.canceled_at,
            "cancellation_details": dict(s.cancellation_details),
            "collection_method": "charge_automatically",
            "created": s.created,
            "currency": s.currency,
            "customer": s.customer,
            "customer_account": None,
            "days_until_due": None,
            "default_payment_method": s.default_payment_method,
            "default_source": None,
            "default_tax_rates": [
                self.render_tax_rate(self.tax_rates[t]) for t in s.default_tax_rates
            ],
            "description": s.description,
            "discounts": list(s.discounts),
            "ended_at": s.ended_at,
            "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
            "items": {
                "object": "list",
                "data": [self.render_item(s, it) for it in s.items],
                "has_more": False,
                "total_count": len(s.items),
                "url": f"/v1/subscription_items?subscription={s.id}",
            },
            "latest_invoice": s.latest_invoice,
            "livemode": False,
            "metadata": dict(s.metadata),
            "next_pending_invoice_item_invoice": None,
            "on_behalf_of": None,
            "pause_collection": None,
            "payment_settings": {
                "payment_method_options": None,
                "payment_method_types": None,
                "save_default_payment_method": "off",
            },
            "pending_invoice_item_interval": None,
            "pending_setup_intent": None,
            "pending_update": pending,
            "schedule": s.schedule,
            "start_date": s.created,
            "status": s.status,
            "test_clock": self._clock_of(s.customer),
            "transfer_data": None,
            "trial_end": None,
            "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
            "trial_start": None,
        }

    embedded_lines: int  # how many lines an invoice embeds (FakeStripeState.reset)

    def render_lines(self, inv: Invoice) -> Json:
        rendered = [self.render_line(line) for line in inv.lines]
        # Previews are left whole: how a preview's further lines are read is not modelled.
        shown = rendered if inv.preview else rendered[: self.embedded_lines]
        return {
            "object": "list",
            "data": shown,
            "has_more": len(shown) < len(rendered),
            "total_count": len(rendered),
            "url": f"/v1/invoices/{inv.id}/lines",
        }

    def render_line(self, line: Line) -> Json:
        if line.proration and line.quantity:
            unit = _decimal_str(Decimal(line.amount) / line.quantity)
        else:
            unit = str(self.prices[line.price].unit_amount) if line.price in self.prices else "0"
        return {
            "id": line.id,
            "object": "line_item",
            "amount": line.amount,
            "currency": line.currency,
            "description": line.description,
            "discount_amounts": [
                {"amount": amount, "discount": discount_id}
                for discount_id, amount in line.discount_amounts
            ],
            "discountable": not line.proration,
            "discounts": list(line.discounts),
            "invoice": line.invoice,
            "livemode": False,
            "metadata": {},
            "parent": {
                "invoice_item_details": None,
                "subscription_item_details": {
                    "invoice_item": line.invoice_item,
                    "proration": line.proration,
                    "proration_details": {"credited_items": None},
                    "subscription": line.subscription,
                    "subscription_item": line.subscription_item,
                },
                "type": "subscription_item_details",
            },
            "period": {"end": line.period_end, "start": line.period_start},
            # "Contains pretax credit amounts (ex: discount, ...)" (the SDK's docstring); the
            # invoice's total_pretax_credit_amounts is "a combined list" of these.
            "pretax_credit_amounts": [
                {
                    "amount": amount,
                    "credit_balance_transaction": None,
                    "discount": discount_id,
                    "type": "discount",
                }
                for discount_id, amount in line.discount_amounts
                if amount
            ],
            "pricing": {
                "price_details": {"price": line.price, "product": line.product},
                "type": "price_details",
                "unit_amount_decimal": unit,
            },
            "quantity": line.quantity,
            "quantity_decimal": str(line.quantity),
            "subscription": line.subscription,
            "subtotal": line.amount,
            "taxes": [
                {
                    "amount": tax,
                    "tax_behavior": "exclusive",
                    "tax_rate_details": {"tax_rate": rate_id},
                    "taxability_reason": "standard_rated",
                    "taxable_amount": taxable,
                    "type": "tax_rate_details",
                }
                for rate_id, tax, taxable in line.taxes
            ],
        }

    def render_invoice(self, inv: Invoice) -> Json:
        customer = self.customers.get(inv.customer)
        parent = None
        if inv.subscription is not None:
            parent = {
                "quote_details": None,
                "subscription_details": {
                    "metadata": dict(inv.subscription_metadata or {}),
                    "subscription": inv.subscription,
                    # "Only set for upcoming invoices that preview prorations" (the SDK's
                    # Invoice.parent.subscription_details docstring, from Stripe's OpenAPI spec):
                    # an invoice a change really issued has none.
                    "subscription_proration_date": inv.proration_date if inv.preview else None,
                },
                "type": "subscription_details",
            }
        total = inv.total
        remaining = 0 if inv.status in ("paid", "void") else inv.amount_due - inv.amount_paid
        return {
            "id": inv.id,
            "object": "invoice",
            "account_country": "US",
            "account_name": "Upshift fake Stripe account",
            "account_tax_ids": None,
            "amount_due": inv.amount_due,
            "amount_overpaid": 0,
            "amount_paid": inv.amount_paid,
            "amount_paid_off_stripe": 0,
            "amount_remaining": remaining,
            "amount_shipping": 0,
            "application": None,
            "attempt_count": inv.attempt_count,
            "attempted": inv.attempted,
            "auto_advance": inv.status in ("draft", "open"),
            "automatic_tax": {
                "disabled_reason": None,
                "enabled": False,
                "liability": None,
                "provider": None,
                "status": None,
            },
            "automatically_finalizes_at": None,
            "billing_reason": inv.billing_reason,
            "collection_method": "charge_automatically",
            "confirmation_secret": None,
            "created": inv.created,
            "currency": inv.currency,
            "custom_fields": None,
            "customer": inv.customer,
            "customer_account": None,
            "customer_address": None,
            "customer_email": customer.email if customer else None,
            "customer_name": customer.name if customer else None,
            "customer_phone": None,
            "customer_shipping": None,
            "customer_tax_exempt": "none",
            "customer_tax_ids": [],
            "default_payment_method": None,
            "default_source": None,
            "default_tax_rates": [],
            "description": None,
            "discounts": list(inv.discounts),
            "due_date": None,
            "effective_at": inv.finalized_at,
            "ending_balance": inv.ending_balance,
            "footer": None,
            "from_invoice": None,
            # "The URL for the hosted invoice page, which allows customers to view and pay an
            # invoice. If the invoice has not been finalized yet, this will be null" (the SDK's
            # Invoice docstring). The double serves the page itself (FakeStripe: /hosted/...).
            "hosted_invoice_url": self.hosted_invoice_url(inv) if inv.finalized_at else None,
            "invoice_pdf": None,
            "issuer": {"type": "self"},
            "last_finalization_error": None,
            "latest_revision": None,
            "lines": self.render_lines(inv),
            "livemode": False,
            "metadata": {},
            "next_payment_attempt": None,
            "number": inv.number,
            "on_behalf_of": None,
            "parent": parent,
            "payment_settings": {
                "default_mandate": None,
                "payment_method_options": None,
                "payment_method_types": None,
            },
            "period_end": inv.period_end,
            "period_start": inv.period_start,
            "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0,
            "receipt_number": None,
            "rendering": None,
            "shipping_cost": None,
            "shipping_details": None,
            "starting_balance": inv.starting_balance,
            "statement_descriptor": None,
            "status": inv.status,
            "status_transitions": {
                "finalized_at": inv.finalized_at,
                "marked_uncollectible_at": None,
                "paid_at": inv.paid_at,
                "voided_at": inv.voided_at,
            },
            "subtotal": inv.subtotal,
            "subtotal_excluding_tax": inv.subtotal,
            "test_clock": self._clock_of(inv.customer),
            "threshold_reason": None,
            "total": total,
            "total_discount_amounts": [
                {"amount": amount, "discount": discount_id}
                for discount_id, amount in inv.total_discount_amounts
            ],
            "total_excluding_tax": inv.total_excluding_tax,
            "total_pretax_credit_amounts": [
                {
                    "amount": amount,
                    "credit_balance_transaction": None,
                    "discount": discount_id,
                    "type": "discount",
                }
                for discount_id, amount in inv.total_discount_amounts
            ],
            "total_taxes": [
                {
                    "amount": tax,
                    "tax_behavior": "exclusive",
                    "tax_rate_details": {"tax_rate": rate_id},
                    "taxability_reason": "standard_rated",
                    "taxable_amount": taxable,
                    "type": "tax_rate_details",
                }
                for rate_id, tax, taxable in inv.total_taxes
            ],
            "webhooks_delivered_at": inv.finalized_at,
        }

    def render_schedule(self, sc: Schedule) -> Json:
        current = None
        if sc.status == "active":
            phase = sc.phases[sc.current]
            current = {"end_date": phase.end_date, "start_date": phase.start_date}
        phases = [
            {
                "add_invoice_items": [],
                "application_fee_percent": None,
                "automatic_tax": None
                if ph.automatic_tax is None
                else {
                    "disabled_reason": None,
                    "enabled": bool(ph.automatic_tax.get("enabled")),
                    "liability": ph.automatic_tax.get("liability"),
                },
                "billing_cycle_anchor": None,
                "billing_thresholds": None,
                "collection_method": None,
                "currency": ph.currency,
                "default_payment_method": None,
                "default_tax_rates": [],
                "description": None,
                "discounts": [
                    {
                        "coupon": d.get("coupon"),
                        "discount": d.get("discount"),
                        "promotion_code": d.get("promotion_code"),
                    }
                    for d in ph.discounts
                ],
                "end_date": ph.end_date,
                "invoice_settings": None,
                "items": [
                    {
                        "billing_thresholds": None,
                        "discounts": [],
                        "metadata": dict(it.metadata),
                        "plan": it.price,
                        "price": it.price,
                        "quantity": it.quantity,
                        "tax_rates": [],
                    }
                    for it in ph.items
                ],
                "metadata": dict(ph.metadata),
                "on_behalf_of": None,
                "proration_behavior": ph.proration_behavior,
                "start_date": ph.start_date,
                "transfer_data": None,
                "trial_end": None,
            }
            for ph in sc.phases
        ]
        return {
            "id": sc.id,
            "object": "subscription_schedule",
            "application": None,
            "billing_mode": dict(_FLEXIBLE),
            "canceled_at": sc.canceled_at,
            "completed_at": sc.completed_at,
            "created": sc.created,
            "current_phase": current,
            "customer": sc.customer,
            "customer_account": None,
            "default_settings": {
                "application_fee_percent": None,
                "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
                "billing_cycle_anchor": "automatic",
                "billing_thresholds": None,
                "collection_method": "charge_automatically",
                "default_payment_method": None,
                "description": None,
                "invoice_settings": {
                    "account_tax_ids": None,
                    "days_until_due": None,
                    "issuer": {"type": "self"},
                },
                "on_behalf_of": None,
                "transfer_data": None,
            },
            "end_behavior": sc.end_behavior,
            "livemode": False,
            "metadata": dict(sc.metadata),
            "pause_schedules": [],
            "phases": phases,
            "released_at": sc.released_at,
            "released_subscription": sc.released_subscription,
            "status": sc.status,
            "subscription": sc.subscription,
            "test_clock": self._clock_of(sc.customer),
        }

    def hosted_invoice_url(self, inv: Invoice) -> str:
        return f"{self.hosted_base}/hosted/invoices/{inv.id}"

    def render_payment_intent(self, pi: PaymentIntent) -> Json:
        """A PaymentIntent in the SDK's shape (stripe/_payment_intent.py); ``next_action`` is
        ``use_stripe_sdk`` while the customer must authenticate (3-D Secure), as for a card
        payment confirmed on session (docs.stripe.com/payments/3d-secure/authentication-flow)."""
        received = pi.amount if pi.status == "succeeded" else 0
        return {
            "id": pi.id,
            "object": "payment_intent",
            "amount": pi.amount,
            "amount_capturable": 0,
            "amount_received": received,
            "application": None,
            "application_fee_amount": None,
            "automatic_payment_methods": None,
            "canceled_at": pi.canceled_at,
            "cancellation_reason": "void_invoice" if pi.status == "canceled" else None,
            "capture_method": "automatic",
            "client_secret": pi.client_secret,
            "confirmation_method": "automatic",
            "created": pi.created,
            "currency": pi.currency,
            "customer": pi.customer,
            "description": f"Payment for Invoice {pi.invoice}",
            "last_payment_error": dict(pi.last_payment_error) if pi.last_payment_error else None,
            "latest_charge": None,
            "livemode": False,
            "metadata": {},
            "next_action": {"type": "use_stripe_sdk", "use_stripe_sdk": {}}
            if pi.status == "requires_action"
            else None,
            "on_behalf_of": None,
            "payment_method": None,
            "payment_method_types": ["card"],
            "payment_record": None,
            "processing": None,
            "receipt_email": None,
            "review": None,
            "setup_future_usage": None,
            "shipping": None,
            "source": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": None,
            "status": pi.status,
            "transfer_data": None,
            "transfer_group": None,
        }

    def render_invoice_payments(self, inv: Invoice) -> Json:
        """``invoice.payments``, an includable list ("When retrieving an invoice, there is an
        includable payments property containing the first handful of those items": the SDK's
        InvoicePayment docstrings): the invoice's PaymentIntent, once it has one."""
        data = []
        pi = self.payment_intents.get(inv.payment_intent or "")
        if pi is not None:
            status = {"succeeded": "paid", "canceled": "canceled"}.get(pi.status, "open")
            data.append(
                {
                    "id": "inpay_" + pi.id.removeprefix("pi_"),
                    "object": "invoice_payment",
                    "amount_paid": pi.amount if status == "paid" else None,
                    "amount_requested": pi.amount,
                    "created": pi.created,
                    "currency": pi.currency,
                    "invoice": inv.id,
                    "is_default": True,
                    "livemode": False,
                    "payment": {
                        "charge": None,
                        "payment_intent": pi.id,
                        "payment_record": None,
                        "type": "payment_intent",
                    },
                    "status": status,
                    "status_transitions": {
                        "canceled_at": pi.canceled_at,
                        "paid_at": inv.paid_at if status == "paid" else None,
                    },
                }
            )
        return {
            "object": "list",
            "data": data,
            "has_more": False,
            "url": f"/v1/invoice_payments?invoice={inv.id}",
        }

    def render_id(self, object_id: str) -> Json | None:
        """Render any stored object by id (used for ``expand[]``)."""
        if object_id in self.payment_intents:
            return self.render_payment_intent(self.payment_intents[object_id])
        if object_id in self.customers:
            return self.render_customer(self.customers[object_id])
        if object_id in self.products:
            return self.render_product(self.products[object_id])
        if object_id in self.prices:
            return self.render_price(self.prices[object_id])
        if object_id in self.subscriptions:
            return self.render_subscription(self.subscriptions[object_id])
        if object_id in self.invoices:
            return self.render_invoice(self.invoices[object_id])
        if object_id in self.schedules:
            return self.render_schedule(self.schedules[object_id])
        if object_id in self.coupons:
            return self.render_coupon(self.coupons[object_id])
        if object_id in self.discounts:
            return self.render_discount(self.discounts[object_id])
        if object_id in self.tax_rates:
            return self.render_tax_rate(self.tax_rates[object_id])
        if object_id in self.test_clocks:
            return self.render_test_clock(self.test_clocks[object_id])
        return None
