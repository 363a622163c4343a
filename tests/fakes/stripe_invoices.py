"""Invoice building blocks of the fake Stripe server: lines, invoices, payment attempts.

An invoice's ``amount_due`` applies the customer's balance: credits (negative
balance, e.g. from a downgrade) are consumed first and a negative total becomes
customer credit (``amount_due`` 0), as on Stripe.  Payment attempts consume an
armed ``card_declined`` fault whose target matches the request or the renewal.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tests.fakes.stripe_billing import format_date, format_money, interval_label
from tests.fakes.stripe_models import (
    Faults,
    Invoice,
    Line,
    PaymentIntent,
    Price,
    StripeError,
    Subscription,
)
from tests.fakes.stripe_state import FakeStripeState, only

__all__ = ["InvoiceOps"]

Json = dict[str, Any]


class InvoiceOps:
    """Lines, invoices and payment attempts (the caller holds the state lock)."""

    def __init__(self, state: FakeStripeState) -> None:
        self.s = state

    def _recurring_price(self, price_id: str, param: str, require_active: bool = True) -> Price:
        price = self.s.price(price_id, param)
        if price.interval is None:
            raise StripeError.invalid(
                "The price specified is set to `type=one_time` but this field only accepts "
                "prices with `type=recurring`.",
                param,
            )
        if require_active and not price.active:
            raise StripeError.invalid(
                "The price specified is inactive. This field only accepts active prices.", param
            )
        return price

    def _name(self, price: Price) -> str:
        product = self.s.products.get(price.product)
        return product.name if product else price.product

    def _full_line(
        self, sub_id: str, item_id: str, price: Price, quantity: int, start: int, end: int
    ) -> Line:
        assert price.interval is not None
        every = interval_label(price.interval, price.interval_count)
        per = f"/ {every}" if price.interval_count == 1 else every
        return Line(
            id=self.s.ids.new("il"),
            amount=price.unit_amount * quantity,
            currency=price.currency,
            description=(
                f"{quantity} × {self._name(price)} "
                f"(at {format_money(price.unit_amount, price.currency)} {per})"
            ),
            period_start=start,
            period_end=end,
            price=price.id,
            product=price.product,
            quantity=quantity,
            proration=False,
            subscription=sub_id,
            subscription_item=item_id,
        )

    def _proration_line(
        self,
        sub_id: str,
        item_id: str,
        price: Price,
        quantity: int,
        amount: int,
        at: int,
        end: int,
        preview: bool,
    ) -> Line:
        kind = "Unused" if amount < 0 else "Remaining"
        return Line(
            id=self.s.ids.new("il_tmp" if preview else "il"),
            amount=amount,
            currency=price.currency,
            description=(
                f"{kind} time on {quantity} × {self._name(price)} after {format_date(at)}"
            ),
            period_start=at,
            period_end=end,
            price=price.id,
            product=price.product,
            quantity=quantity,
            proration=True,
            subscription=sub_id,
            subscription_item=item_id,
            invoice_item=None if preview else self.s.ids.new("ii"),
        )

    def _haystacks(self, *extra: str | None) -> list[str]:
        return [*self.s.request_haystacks, *(e for e in extra if e)]

    def _check_proration_date(self, sub: Subscription, pd: int, param: str) -> None:
        if not sub.period_start <= pd <= sub.period_end:
            raise StripeError.invalid(
                f"The proration date ({pd}) must be within the subscription's current period "
                f"({sub.period_start}-{sub.period_end}).",
                param,
            )

    def _build_invoice(
        self,
        sub: Subscription,
        lines: list[Line],
        reason: str,
        period: tuple[int, int],
        preview: bool = False,
        proration_date: int | None = None,
    ) -> Invoice:
        customer = self.s.customers[sub.customer]
        invoice_id = self.s.ids.new("upcoming_in" if preview else "in")
        own = [dataclasses.replace(line, invoice=invoice_id) for line in lines]
        total = sum(line.amount for line in own)
        applied = total + customer.balance
        return Invoice(
            id=invoice_id,
            created=self.s.now,
            customer=sub.customer,
            currency=sub.currency,
            subscription=sub.id,
            billing_reason=reason,
            lines=own,
            period_start=period[0],
            period_end=period[1],
            starting_balance=customer.balance,
            ending_balance=min(applied, 0),
            amount_due=max(applied, 0),
            proration_date=proration_date,
            subscription_metadata=dict(sub.metadata),
            preview=preview,
        )

    def _outcome(self, inv: Invoice, payment_behavior: str, haystacks: list[str]) -> str:
        """``paid`` | ``declined`` | ``requires_action`` | ``not_attempted`` -- consumes a
        ``card_declined`` fault. A customer whose card requires authentication on every
        transaction (FakeStripe.require_authentication) gets ``requires_action``: the payment
        waits for the customer's 3-D Secure step."""
        if inv.amount_due <= 0:
            return "paid"
        if payment_behavior == "default_incomplete":
            return "not_attempted"
        if self.s.faults.take(Faults.PAYMENT_MODES, haystacks) is not None:
            return "declined"
        if self.s.customers[inv.customer].requires_authentication:
            return "requires_action"
        return "paid"

    def _commit_invoice(self, inv: Invoice, outcome: str) -> None:
        customer = self.s.customers[inv.customer]
        inv.status = "draft"
        self.s.invoices[inv.id] = inv
        self.s.emit("invoice.created", self.s.render_invoice(inv))
        inv.status, inv.number, inv.finalized_at = "open", self.s.next_invoice_number(), self.s.now
        customer.balance = inv.ending_balance if inv.ending_balance is not None else 0
        if inv.amount_due > 0:
            # "the PaymentIntent that Stripe creates during invoice finalization" (the SDK's
            # Invoice.confirmation_secret docstring).
            pi_id = self.s.ids.new("pi")
            self.s.payment_intents[pi_id] = PaymentIntent(
                id=pi_id,
                created=self.s.now,
                amount=inv.amount_due,
                currency=inv.currency,
                customer=inv.customer,
                invoice=inv.id,
                client_secret=f"{pi_id}_secret_{self.s.ids.new('cs')[3:]}",
            )
            inv.payment_intent = pi_id
        self.s.emit("invoice.finalized", self.s.render_invoice(inv))
        if outcome == "not_attempted":
            return
        if inv.amount_due > 0:
            inv.attempted, inv.attempt_count = True, inv.attempt_count + 1
        if outcome == "paid":
            self._mark_paid(inv)
        else:
            self._payment_not_made(inv, outcome)

    def _payment_not_made(self, inv: Invoice, outcome: str) -> None:
        """A payment attempt that did not pay ``inv``: declined, or waiting for the customer's
        authentication. "invoice.payment_action_required will be generated when the next action
        is needed, such as when 3D Secure is required, and the hosted_invoice_url returned in
        that event contains a button for the customer to complete the payment"
        (support.stripe.com/questions/completing-a-next-action-for-paymentintents-created-with-
        one-off-invoices)."""
        pi = self.s.payment_intents.get(inv.payment_intent or "")
        if outcome == "requires_action":
            if pi is not None:
                pi.status, pi.last_payment_error = "requires_action", None
            self.s.emit("invoice.payment_action_required", self.s.render_invoice(inv))
            return
        if pi is not None:
            pi.status = "requires_payment_method"
            pi.last_payment_error = {
                "code": "card_declined",
                "decline_code": "generic_decline",
                "message": "Your card was declined.",
                "type": "card_error",
            }
        self.s.emit("invoice.payment_failed", self.s.render_invoice(inv))

    def _mark_paid(self, inv: Invoice) -> None:
        before = self.s.render_invoice(inv)
        inv.status, inv.amount_paid, inv.paid_at = "paid", inv.amount_due, self.s.now
        pi = self.s.payment_intents.get(inv.payment_intent or "")
        if pi is not None:
            pi.status, pi.last_payment_error = "succeeded", None
        after = self.s.render_invoice(inv)
        self.s.emit("invoice.paid", after, self.s.diff(before, after))
        if inv.amount_due > 0:
            self.s.emit("invoice.payment_succeeded", after)

    def _void_invoice(self, inv: Invoice) -> None:
        customer = self.s.customers[inv.customer]
        if inv.ending_balance is not None:
            customer.balance -= inv.ending_balance - inv.starting_balance
        before = self.s.render_invoice(inv)
        inv.status, inv.voided_at = "void", self.s.now
        pi = self.s.payment_intents.get(inv.payment_intent or "")
        if pi is not None and pi.status != "succeeded":
            pi.status, pi.canceled_at = "canceled", self.s.now
        after = self.s.render_invoice(inv)
        self.s.emit("invoice.voided", after, self.s.diff(before, after))

    def list_lines(self, invoice_id: str, p: Json) -> Json:
        """GET /v1/invoices/{id}/lines: every line, paginated (docs.stripe.com/api/invoices/
        invoice_lines; limit 1 to 100, default 10)."""
        only(p, {"limit", "starting_after", "ending_before", "expand"})
        invoice = self.s.invoice(invoice_id)
        limit = p.get("limit", 10)
        if not 1 <= limit <= 100:
            raise StripeError.invalid(
                "Invalid limit: must be between 1 and 100.", "limit", "parameter_invalid_integer"
            )
        # In the invoice's own order (the embedded `lines` and this list agree), not newest first.
        rendered = [self.s.render_line(line) for line in invoice.lines]
        ids = [line["id"] for line in rendered]
        start = 0
        if "starting_after" in p:
            if p["starting_after"] not in ids:
                raise StripeError.missing("line_item", p["starting_after"], "starting_after")
            start = ids.index(p["starting_after"]) + 1
        page = rendered[start : start + limit]
        return {
            "object": "list",
            "data": page,
            "has_more": start + limit < len(rendered),
            "url": f"/v1/invoices/{invoice_id}/lines",
        }

    def list_invoices(self, p: Json) -> Json:
        only(p, {"customer", "subscription", "status", "limit", "starting_after", "ending_before"})
        found = list(self.s.invoices.values())
        if "customer" in p:
            found = [i for i in found if i.customer == p["customer"]]
        if "subscription" in p:
            found = [i for i in found if i.subscription == p["subscription"]]
        if "status" in p:
            found = [i for i in found if i.status == p["status"]]
        rendered = [self.s.render_invoice(i) for i in found]
        return self.s.list_response(rendered, "/v1/invoices", p)
