"""Invoice building blocks of the fake Stripe server: lines, invoices, payment attempts.

An invoice's ``amount_due`` applies the customer's balance: credits (negative
balance, e.g. from a downgrade) are consumed first and a negative total becomes
customer credit (``amount_due`` 0), as on Stripe.  Payment attempts consume an
armed ``card_declined`` fault whose target matches the request or the renewal.

Discounts and tax (docs.stripe.com/api/invoices/object): ``subtotal`` is the sum of
the lines; ``total_discount_amounts`` what the subscription's discounts take off
the discountable lines; ``total_excluding_tax`` = subtotal - discounts; exclusive
tax rates add ``total_taxes`` on each line's discounted amount; ``total`` =
total_excluding_tax + taxes; ``amount_due`` = total after the customer's balance.
With ``billing_mode.flexible.proration_discounts = "included"`` (the default this
fake renders) a proration line's ``amount`` is already net of the subscription's
discounts and the invoice's ``total_discount_amounts`` exclude them; the line lists
the discount with amount 0 (docs.stripe.com/changelog/clover/2025-09-30/
itemize-proration-discount-amounts, "Changes summary").
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tests.fakes.stripe_billing import (
    format_date,
    format_money,
    interval_label,
    percent_of,
    round_half_away,
)
from tests.fakes.stripe_models import (
    Coupon,
    Discount,
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

    # -- discounts and tax ----------------------------------------------------------------

    def active_discounts(self, sub: Subscription) -> list[tuple[Discount, Coupon]]:
        """The subscription's discounts in force now: a repeating one until its `end`."""
        found = []
        for discount_id in sub.discounts:
            discount = self.s.discounts[discount_id]
            if discount.end is None or self.s.now < discount.end:
                found.append((discount, self.s.coupons[discount.coupon]))
        return found

    def net_of_discounts(self, sub: Subscription, amount: int) -> int:
        """A debit proration's amount with the subscription's percent-off discounts taken off
        ("included": the proration's amount is "Net amount (after discounts)"). Amount-off
        coupons are left to the invoice (a simplification: see tests/fakes/README.md)."""
        if amount <= 0:
            return amount
        for _, coupon in self.active_discounts(sub):
            if coupon.percent_off is not None:
                amount -= percent_of(amount, coupon.percent_off)
        return amount

    def _priced(self, sub: Subscription, lines: list[Line]) -> list[Line]:
        """The lines with their discount and tax amounts, as the invoice shows them."""
        discounts = self.active_discounts(sub)
        ids = [discount.id for discount, _ in discounts]
        priced: list[Line] = []
        for line in lines:
            amounts: list[tuple[str, int]] = []
            if line.proration:
                amounts = [(discount_id, 0) for discount_id in ids]
            else:
                left = line.amount
                for discount, coupon in discounts:
                    off = 0
                    if coupon.percent_off is not None and left > 0:
                        off = percent_of(left, coupon.percent_off)
                    amounts.append((discount.id, off))
                    left -= off
            priced.append(dataclasses.replace(line, discounts=ids, discount_amounts=amounts))
        self._allocate_amount_off(discounts, priced)
        for line in priced:
            taxable = line.amount - sum(amount for _, amount in line.discount_amounts)
            line.taxes = [
                (rate_id, percent_of(taxable, self.s.tax_rates[rate_id].percentage), taxable)
                for rate_id in sub.default_tax_rates
            ]
        return priced

    @staticmethod
    def _allocate_amount_off(discounts: list[tuple[Discount, Coupon]], lines: list[Line]) -> None:
        """An amount-off coupon "will be subtracted from any invoice's subtotal" (the SDK's
        Coupon.amount_off docstring), at most the discountable amount left, shared out over
        the discountable lines in proportion (the last takes the rounding remainder)."""
        for discount, coupon in discounts:
            if coupon.amount_off is None:
                continue
            eligible = [line for line in lines if not line.proration]
            left = {
                line.id: line.amount - sum(a for _, a in line.discount_amounts) for line in eligible
            }
            base = sum(max(v, 0) for v in left.values())
            off = min(coupon.amount_off, base)
            given = 0
            for index, line in enumerate(eligible):
                share = (
                    off - given
                    if index == len(eligible) - 1
                    else round_half_away(off * max(left[line.id], 0), base)
                    if base
                    else 0
                )
                given += share
                line.discount_amounts = [
                    (did, amount + share if did == discount.id else amount)
                    for did, amount in line.discount_amounts
                ]

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
        own = self._priced(sub, [dataclasses.replace(line, invoice=invoice_id) for line in lines])
        inv = Invoice(
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
            ending_balance=0,
            amount_due=0,
            proration_date=proration_date,
            subscription_metadata=dict(sub.metadata),
            preview=preview,
            discounts=[discount.id for discount, _ in self.active_discounts(sub)],
        )
        # docs.stripe.com/billing/customer/balance: the balance is applied to the invoice's
        # total; what is left of a credit stays the customer's.
        applied = inv.total + customer.balance
        inv.ending_balance, inv.amount_due = min(applied, 0), max(applied, 0)
        return inv

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
        sub = self.s.subscriptions.get(inv.subscription or "")
        if sub is not None:
            # A coupon with duration `once` "applies to the first invoice" only
            # (docs.stripe.com/api/coupons/object#coupon_object-duration): spent once issued.
            spent = [
                discount_id
                for discount_id in inv.discounts
                if self.s.coupons[self.s.discounts[discount_id].coupon].duration == "once"
            ]
            sub.discounts = [d for d in sub.discounts if d not in spent]
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
