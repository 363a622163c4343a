"""Subscriptions, prorations, invoices, schedules and the clock of the fake Stripe server.

Behaviour modelled (Stripe's documented behaviour for ``billing_mode=flexible``):

* Prorations: per changed item, a credit for the unused part of what the item was
  actually billed (tracked per item as amount + the time it was billed from) and a
  charge for the remaining time of the new price x quantity, both
  ``round(amount * (end - proration_date) / span)`` half away from zero, per line.
* ``create_prorations`` -> pending invoice items (swept into the next invoice);
  ``always_invoice`` -> an invoice created and paid now; ``none`` -> no lines.
* A change of billing interval resets the period to ``[proration_date, +interval)``
  and always invoices immediately (credits for unused time unless ``none``).
* Payment: ``allow_incomplete`` applies the change and leaves the invoice open
  (subscription ``past_due``); ``error_if_incomplete`` applies nothing and raises
  402; ``pending_if_incomplete`` applies nothing, keeps the invoice open and stores
  a ``pending_update`` (see :class:`~tests.fakes.stripe_models.PendingUpdate`);
  ``default_incomplete`` does not attempt payment (invoice open, ``past_due``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tests.fakes.stripe_billing import (
    boundary,
    prorate,
)
from tests.fakes.stripe_invoices import InvoiceOps
from tests.fakes.stripe_models import (
    Discount,
    Invoice,
    Line,
    PendingUpdate,
    Price,
    StripeError,
    SubItem,
    Subscription,
)
from tests.fakes.stripe_state import merge_metadata, only

__all__ = ["PENDING_UPDATE_TTL", "Plan", "SubscriptionOps"]

Json = dict[str, Any]
PENDING_UPDATE_TTL = 23 * 3600
_ITEM_KEYS = {"id", "price", "quantity", "deleted", "metadata"}
# docs.stripe.com/billing/subscriptions/pending-updates-reference, plus `metadata` since
# 2026-05-27.dahlia ("stored in pending_update.metadata and applied to the subscription when the
# pending update is resolved", merged: docs.stripe.com/changelog/dahlia/2026-05-27/
# pending-subscription-update-metadata); the SDK's pinned version is later than that.
_PENDING_ALLOWED = {
    "expand", "payment_behavior", "proration_behavior", "proration_date", "billing_cycle_anchor",
    "items", "trial_end", "trial_from_plan", "add_invoice_items", "metadata",
}  # fmt: skip


@dataclass
class Plan:
    """The outcome of an item change, computed without touching the subscription."""

    items: list[SubItem]
    changed: list[str]
    lines: list[Line]
    period: tuple[int, int, int, int] | None  # (anchor, k, start, end) on an interval change
    interval: tuple[str, int]
    proration_date: int


class SubscriptionOps(InvoiceOps):
    """Subscriptions: create, update (prorations, payment behaviours), cancel, preview."""

    def plan_items(
        self,
        sub: Subscription,
        item_params: list[Json],
        pd: int,
        behavior: str,
        prefix: str = "items",
        preview: bool = False,
        require_active: bool = True,
    ) -> Plan:
        wanted: list[dict[str, Any]] = [
            {
                "old": it,
                "price": it.price,
                "quantity": it.quantity,
                "metadata": dict(it.metadata),
                "deleted": False,
            }
            for it in sub.items
        ]
        by_id = {w["old"].id: w for w in wanted}
        for i, ip in enumerate(item_params):
            pre = f"{prefix}[{i}]"
            only(ip, _ITEM_KEYS, pre)
            if ip.get("quantity", 0) < 0:
                raise StripeError.invalid(
                    "This value must be greater than or equal to 0.",
                    f"{pre}[quantity]",
                    "parameter_invalid_integer",
                )
            if "id" in ip:
                w = by_id.get(ip["id"])
                if w is None:
                    raise StripeError.missing("subscription item", ip["id"], f"{pre}[id]")
                if ip.get("deleted"):
                    w["deleted"] = True
                    continue
            else:
                if ip.get("deleted"):
                    raise StripeError.invalid(
                        "`deleted` requires the `id` of an existing item.", f"{pre}[deleted]"
                    )
                if "price" not in ip:
                    raise StripeError.invalid(
                        f"Missing required param: {pre}[price].",
                        f"{pre}[price]",
                        "parameter_missing",
                    )
                w = {"old": None, "price": None, "quantity": 1, "metadata": {}, "deleted": False}
                wanted.append(w)
            if "price" in ip and ip["price"] != w["price"]:
                self._recurring_price(ip["price"], f"{pre}[price]", require_active)
                w["price"] = ip["price"]
            if "quantity" in ip:
                w["quantity"] = ip["quantity"]
            if "metadata" in ip:
                w["metadata"] = merge_metadata(w["metadata"], ip["metadata"], f"{pre}[metadata]")

        result = [w for w in wanted if not w["deleted"]]
        if not result:
            raise StripeError.invalid("A subscription must have at least one item.", prefix)
        prices = [self.s.prices[w["price"]] for w in result]
        seen: set[str] = set()
        for price in prices:
            if price.id in seen:
                raise StripeError.invalid(
                    f"Cannot add multiple subscription items with the same price: {price.id}",
                    prefix,
                )
            seen.add(price.id)
            if price.currency != sub.currency:
                raise StripeError.invalid(
                    "Currency of all prices must match the subscription's currency "
                    f"({sub.currency}); {price.id} is {price.currency}.",
                    prefix,
                )
        intervals = {(p.interval, p.interval_count) for p in prices}
        if len(intervals) > 1:
            raise StripeError.invalid(
                "Currency and interval fields must match across all plans on this "
                "subscription. Found mismatch in interval field.",
                prefix,
            )
        interval = (prices[0].interval or "month", prices[0].interval_count)
        reset = interval != (sub.interval, sub.interval_count)
        prorating = behavior != "none"
        end = sub.period_end
        live = pd < end
        credits: list[Line] = []  # Stripe lists the "Unused time" credits first
        charges: list[Line] = []
        items: list[SubItem] = []
        changed: list[str] = []
        period: tuple[int, int, int, int] | None = None

        def credit(it: SubItem) -> None:
            if prorating and live and it.billed_amount:
                amount = prorate(it.billed_amount, it.billed_from, end, pd)
                billed = self.s.prices[it.billed_price]
                credits.append(
                    self._proration_line(
                        sub.id, it.id, billed, it.billed_quantity, -amount, pd, end, preview
                    )
                )

        if reset:
            period = (pd, 1, pd, boundary(pd, interval[0], interval[1], 1))
        for w in wanted:
            old_item: SubItem | None = w["old"]
            if old_item is not None and (
                reset
                or w["deleted"]
                or old_item.price != w["price"]
                or old_item.quantity != w["quantity"]
            ):
                credit(old_item)
        for w, price in zip(result, prices, strict=True):
            old: SubItem | None = w["old"]
            is_changed = old is None or old.price != w["price"] or old.quantity != w["quantity"]
            item = (
                dataclasses.replace(old)
                if old is not None
                else SubItem(
                    id=self.s.ids.new("si"),
                    created=self.s.now,
                    price=price.id,
                    quantity=w["quantity"],
                    billed_from=pd,
                    billed_price=price.id,
                    billed_quantity=w["quantity"],
                )
            )
            item.price, item.quantity, item.metadata = price.id, w["quantity"], w["metadata"]
            if is_changed:
                changed.append(item.id)
            full = price.unit_amount * item.quantity
            if reset:
                assert period is not None
                charges.append(
                    self._full_line(sub.id, item.id, price, item.quantity, pd, period[3])
                )
                item.billed_amount, item.billed_from = self.net_of_discounts(sub, full), pd
                item.billed_price, item.billed_quantity = price.id, item.quantity
            elif is_changed and prorating:
                charge = (
                    self.net_of_discounts(sub, prorate(full, sub.basis_start, end, pd))
                    if live
                    else 0
                )
                if live:
                    charges.append(
                        self._proration_line(
                            sub.id, item.id, price, item.quantity, charge, pd, end, preview
                        )
                    )
                item.billed_amount, item.billed_from = charge, pd
                item.billed_price, item.billed_quantity = price.id, item.quantity
            items.append(item)
        return Plan(items, changed, credits + charges, period, interval, pd)

    def _apply_plan(self, sub: Subscription, items: list[SubItem], plan_period: Any) -> None:
        sub.items = items
        if plan_period is not None:
            sub.anchor, sub.period_k, sub.period_start, sub.period_end = plan_period
            sub.basis_start = sub.period_start
            price = self.s.prices[items[0].price]
            sub.interval, sub.interval_count = price.interval or "month", price.interval_count

    def pay_invoice(self, invoice_id: str, p: Json) -> Json:
        only(p, {"paid_out_of_band"})
        inv = self.s.invoice(invoice_id)
        if inv.status == "paid":
            raise StripeError.invalid("Invoice is already paid.", None, "invoice_already_paid")
        if inv.status != "open":
            raise StripeError.invalid(
                f"You can only pay an open invoice (this one is {inv.status}).",
                None,
                "invoice_not_editable",
            )
        if not p.get("paid_out_of_band"):
            haystacks = self._haystacks(inv.id, inv.subscription, inv.customer)
            outcome = self._outcome(inv, "allow_incomplete", haystacks)
            if outcome != "paid":
                inv.attempted, inv.attempt_count = True, inv.attempt_count + 1
                self._payment_not_made(inv, outcome)
                _refuse_unpaid(outcome, keep_state=True)
        self.settle_invoice(inv)
        return self.s.render_invoice(inv)

    def complete_authentication(self, invoice_id: str, succeeded: bool) -> Json:
        """The customer's 3-D Secure step on the hosted invoice page: completed, the invoice is
        paid (and a pending update it carries applied); failed, the payment stays unpaid and
        the PaymentIntent asks for another payment method, as Stripe's test 3-D Secure page
        does (docs.stripe.com/testing#regulatory-cards: "Complete" or "Fail" authentication)."""
        inv = self.s.invoice(invoice_id)
        pi = self.s.payment_intents.get(inv.payment_intent or "")
        if inv.status != "open" or pi is None or pi.status != "requires_action":
            raise StripeError.invalid("This invoice has no payment waiting for authentication.")
        if not succeeded:
            self._payment_not_made(inv, "declined")
            return self.s.render_invoice(inv)
        self.settle_invoice(inv)
        return self.s.render_invoice(inv)

    def settle_invoice(self, inv: Invoice) -> None:
        """Mark ``inv`` paid; a pending update waiting on it is applied, a past-due or
        incomplete subscription it renewed or started becomes active."""
        self._mark_paid(inv)
        sub = self.s.subscriptions.get(inv.subscription or "")
        if sub is not None:
            before = self.s.render_subscription(sub)
            pu = sub.pending_update
            if pu is not None and pu.invoice == inv.id:
                self._apply_plan(sub, pu.items, pu.period)
                if pu.metadata is not None:
                    sub.metadata = merge_metadata(sub.metadata, pu.metadata)
                sub.pending_update = None
                after = self.s.render_subscription(sub)
                self.s.emit(
                    "customer.subscription.pending_update_applied",
                    after,
                    self.s.diff(before, after),
                )
                self.s.emit("customer.subscription.updated", after, self.s.diff(before, after))
            elif sub.status in ("past_due", "incomplete") and sub.latest_invoice == inv.id:
                sub.status = "active"
                after = self.s.render_subscription(sub)
                self.s.emit("customer.subscription.updated", after, self.s.diff(before, after))

    def create_subscription(self, p: Json) -> Json:
        only(
            p,
            {
                "customer", "items", "metadata", "payment_behavior", "proration_behavior",
                "billing_cycle_anchor", "default_payment_method", "description",
                "collection_method", "off_session", "billing_mode", "cancel_at_period_end",
                "discounts", "default_tax_rates",
            },
        )  # fmt: skip
        if "customer" not in p:
            raise StripeError.invalid(
                "Missing required param: customer.", "customer", "parameter_missing"
            )
        customer = self.s.customer(p["customer"], "customer")
        if not p.get("items"):
            raise StripeError.invalid(
                "Missing required param: items.", "items", "parameter_missing"
            )
        if p.get("collection_method", "charge_automatically") != "charge_automatically":
            raise StripeError.unsupported("collection_method")
        mode = p.get("billing_mode", {})
        only(mode, {"type", "flexible"}, "billing_mode")
        if mode.get("type", "flexible") != "flexible":
            raise StripeError.unsupported("billing_mode[type]")
        payment_behavior = p.get("payment_behavior", "allow_incomplete")
        if payment_behavior == "pending_if_incomplete":
            raise StripeError.invalid(
                "`payment_behavior=pending_if_incomplete` is only supported when updating a "
                "subscription.",
                "payment_behavior",
            )
        behavior = p.get("proration_behavior", "create_prorations")
        now = self.s.now
        prices: list[Price] = []
        for i, ip in enumerate(p["items"]):
            pre = f"items[{i}]"
            only(ip, {"price", "quantity", "metadata"}, pre)
            if "price" not in ip:
                raise StripeError.invalid(
                    f"Missing required param: {pre}[price].", f"{pre}[price]", "parameter_missing"
                )
            price = self._recurring_price(ip["price"], f"{pre}[price]")
            if price.id in {x.id for x in prices}:
                raise StripeError.invalid(
                    f"Cannot add multiple subscription items with the same price: {price.id}",
                    "items",
                )
            prices.append(price)
        if (
            len({x.currency for x in prices}) > 1
            or len({(x.interval, x.interval_count) for x in prices}) > 1
        ):
            raise StripeError.invalid(
                "Currency and interval fields must match across all plans on this subscription.",
                "items",
            )
        interval, count = prices[0].interval or "month", prices[0].interval_count
        if "billing_cycle_anchor" in p:
            anchor = p["billing_cycle_anchor"]
            basis = boundary(anchor, interval, count, -1)
            if anchor <= now or basis > now:
                raise StripeError.invalid(
                    "billing_cycle_anchor must be in the future and no later than one billing "
                    "interval from now.",
                    "billing_cycle_anchor",
                )
            k, end = 0, anchor
        else:
            anchor, k, basis = now, 1, now
            end = boundary(now, interval, count, 1)
        sub = Subscription(
            id=self.s.ids.new("sub"),
            created=now,
            customer=customer.id,
            currency=prices[0].currency,
            items=[],
            interval=interval,
            interval_count=count,
            anchor=anchor,
            period_k=k,
            period_start=now,
            period_end=end,
            basis_start=basis,
            status="incomplete",
            metadata=merge_metadata({}, p.get("metadata", {})),
            cancel_at_period_end=p.get("cancel_at_period_end", False),
            default_payment_method=p.get("default_payment_method"),
            description=p.get("description") or None,
        )
        self._redeem(sub, p.get("discounts"))
        self._tax_with(sub, p.get("default_tax_rates"))
        lines: list[Line] = []
        for ip, price in zip(p["items"], prices, strict=True):
            quantity = ip.get("quantity", 1)
            item = SubItem(
                id=self.s.ids.new("si"),
                created=now,
                price=price.id,
                quantity=quantity,
                metadata=merge_metadata({}, ip.get("metadata", {})),
                billed_from=now,
                billed_price=price.id,
                billed_quantity=quantity,
            )
            full = price.unit_amount * quantity
            if k == 1:
                lines.append(self._full_line(sub.id, item.id, price, quantity, now, end))
                item.billed_amount = self.net_of_discounts(sub, full)
            elif behavior != "none":
                item.billed_amount = self.net_of_discounts(sub, prorate(full, basis, end, now))
                lines.append(
                    self._proration_line(
                        sub.id, item.id, price, quantity, item.billed_amount, now, end, False
                    )
                )
            sub.items.append(item)
        inv = self._build_invoice(sub, lines, "subscription_create", (now, now))
        outcome = self._outcome(inv, payment_behavior, self._haystacks(customer.id))
        if payment_behavior == "error_if_incomplete":
            _refuse_unpaid(outcome)
        sub.status = "active" if outcome == "paid" else "incomplete"
        sub.latest_invoice = inv.id
        self.s.subscriptions[sub.id] = sub
        self.s.emit("customer.subscription.created", self.s.render_subscription(sub))
        self._commit_invoice(inv, outcome)
        return self.s.render_subscription(sub)

    def list_subscriptions(self, p: Json) -> Json:
        only(p, {"customer", "price", "status", "limit", "starting_after", "ending_before"})
        found = list(self.s.subscriptions.values())
        status = p.get("status")
        if status is None:
            found = [s for s in found if s.status != "canceled"]
        elif status != "all":
            found = [s for s in found if s.status == status]
        if "customer" in p:
            found = [s for s in found if s.customer == p["customer"]]
        if "price" in p:
            found = [s for s in found if any(it.price == p["price"] for it in s.items)]
        rendered = [self.s.render_subscription(s) for s in found]
        return self.s.list_response(rendered, "/v1/subscriptions", p)

    def update_subscription(self, sub_id: str, p: Json) -> Json:
        sub = self.s.subscription(sub_id)
        only(
            p,
            {
                "items", "proration_behavior", "proration_date", "payment_behavior", "metadata",
                "cancel_at_period_end", "description", "default_payment_method", "off_session",
                "collection_method", "cancellation_details", "discounts", "default_tax_rates",
            },
        )  # fmt: skip
        if sub.status == "canceled" and set(p) - {"metadata", "cancellation_details", "expand"}:
            raise StripeError.invalid(
                "A canceled subscription can only update its cancellation_details and metadata."
            )
        if p.get("collection_method", "charge_automatically") != "charge_automatically":
            raise StripeError.unsupported("collection_method")
        payment_behavior = p.get("payment_behavior", "allow_incomplete")
        behavior = p.get("proration_behavior", "create_prorations")
        if payment_behavior == "pending_if_incomplete":
            for key in p:
                if key not in _PENDING_ALLOWED:
                    raise StripeError.invalid(
                        f"You cannot pass `{key}` when `payment_behavior` is "
                        "`pending_if_incomplete`; only pending-update-supported parameters are "
                        "allowed.",
                        key,
                    )
            for i, ip in enumerate(p.get("items", [])):
                for key in ip:
                    if key not in {"id", "price", "quantity"}:
                        raise StripeError.invalid(
                            f"You cannot pass `items[{i}][{key}]` when `payment_behavior` is "
                            "`pending_if_incomplete`.",
                            f"items[{i}][{key}]",
                        )
        pd = p.get("proration_date", self.s.now)
        if "proration_date" in p:
            self._check_proration_date(sub, pd, "proration_date")
        before = self.s.render_subscription(sub)
        # Set before the items change, so that the change's own prorations see them.
        self._redeem(sub, p.get("discounts"))
        self._tax_with(sub, p.get("default_tax_rates"))
        if sub.pending_update is not None and "items" in p:
            self._discard_pending_update(sub)
        plan = self.plan_items(sub, p.get("items", []), pd, behavior) if "items" in p else None
        pending = False
        if plan is not None:
            pending = self._execute(sub, plan, behavior, payment_behavior, self._haystacks(sub.id))
        if pending and "metadata" in p:
            assert sub.pending_update is not None
            merge_metadata({}, p["metadata"])  # validated now, applied (merged) on payment
            sub.pending_update.metadata = dict(p["metadata"] or {})
        if not pending:
            if "metadata" in p:
                sub.metadata = merge_metadata(sub.metadata, p["metadata"])
            if "cancel_at_period_end" in p:
                sub.cancel_at_period_end = p["cancel_at_period_end"]
            if "description" in p:
                sub.description = p["description"] or None
            if "default_payment_method" in p:
                sub.default_payment_method = p["default_payment_method"]
            if "cancellation_details" in p:
                sub.cancellation_details.update(p["cancellation_details"])
            self.s.update_counts[sub.id] += 1
        after = self.s.render_subscription(sub)
        changes = self.s.diff(before, after)
        if changes:
            self.s.emit("customer.subscription.updated", after, changes)
        if pending and self.s.pending_update_raises:
            raise StripeError.card_declined(keep_state=True)
        return after

    def _redeem(self, sub: Subscription, value: Any) -> None:
        """`discounts`: "A populated array overwrites the existing discounts on the
        subscription. If not specified or empty array, it leaves the subscription's discounts
        unchanged. If empty string, it clears the subscription's discounts" (the SDK's
        SubscriptionUpdateParams.discounts). Each coupon is redeemed into a Discount, which for
        a repeating coupon ends `duration_in_months` later (docs.stripe.com/api/discounts/
        object)."""
        if value == "":
            sub.discounts = []
            return
        if not value:
            return
        redeemed: list[str] = []
        for index, param in enumerate(value):
            only(param, {"coupon"}, f"discounts[{index}]")
            if "coupon" not in param:
                raise StripeError.unsupported(f"discounts[{index}]")
            coupon = self.s.coupon(param["coupon"], f"discounts[{index}][coupon]")
            if coupon.currency is not None and coupon.currency != sub.currency:
                raise StripeError.invalid(
                    f"The coupon's currency ({coupon.currency}) must match the subscription's "
                    f"({sub.currency}).",
                    f"discounts[{index}][coupon]",
                )
            end = None
            if coupon.duration == "repeating":
                assert coupon.duration_in_months is not None
                end = boundary(self.s.now, "month", coupon.duration_in_months, 1)
            discount = Discount(
                id=self.s.ids.new("di"),
                coupon=coupon.id,
                customer=sub.customer,
                subscription=sub.id,
                start=self.s.now,
                end=end,
            )
            self.s.discounts[discount.id] = discount
            coupon.times_redeemed += 1
            redeemed.append(discount.id)
        sub.discounts = redeemed

    def _tax_with(self, sub: Subscription, value: Any) -> None:
        """`default_tax_rates`: "The tax rates that will apply to any subscription item that
        does not have `tax_rates` set ... Pass an empty string to remove previously-defined tax
        rates" (the SDK's SubscriptionUpdateParams.default_tax_rates)."""
        if value is None:
            return
        if value == "":
            sub.default_tax_rates = []
            return
        sub.default_tax_rates = [
            self.s.tax_rate(rate_id, f"default_tax_rates[{index}]").id
            for index, rate_id in enumerate(value)
        ]

    def _execute(
        self,
        sub: Subscription,
        plan: Plan,
        behavior: str,
        payment_behavior: str,
        haystacks: list[str],
    ) -> bool:
        """Apply ``plan`` (invoicing as needed). Returns True when stored as a pending update."""
        immediate = plan.period is not None or (behavior == "always_invoice" and bool(plan.lines))
        if not immediate:
            self._apply_plan(sub, plan.items, plan.period)
            sub.pending_items.extend(plan.lines)
            return False
        swept = list(sub.pending_items)
        inv = self._build_invoice(
            sub,
            swept + plan.lines,
            "subscription_update",
            (self.s.now, self.s.now),
            proration_date=plan.proration_date,
        )
        outcome = self._outcome(inv, payment_behavior, haystacks)
        if payment_behavior == "error_if_incomplete":
            _refuse_unpaid(outcome)
        sub.pending_items = []
        sub.latest_invoice = inv.id
        # "There are two ways to handle payment failures. These are related to declines and
        # customer authentication" (docs.stripe.com/billing/subscriptions/pending-updates-
        # reference): either way the update waits as a pending update on the open invoice.
        unpaid = outcome in ("declined", "requires_action")
        if unpaid and payment_behavior == "pending_if_incomplete":
            sub.pending_update = PendingUpdate(
                expires_at=min(self.s.now + PENDING_UPDATE_TTL, sub.period_end),
                invoice=inv.id,
                items=plan.items,
                changed_items=plan.changed,
                period=plan.period,
                interval=plan.interval,
                swept_pending=swept,
            )
            self._commit_invoice(inv, outcome)
            return True
        self._apply_plan(sub, plan.items, plan.period)
        self._commit_invoice(inv, outcome)
        if outcome != "paid":
            sub.status = "past_due"
        return False

    def _discard_pending_update(self, sub: Subscription) -> None:
        pu = sub.pending_update
        assert pu is not None
        sub.pending_update = None
        inv = self.s.invoices[pu.invoice]
        if inv.status == "open":
            self._void_invoice(inv)
        restored = [dataclasses.replace(x, invoice=None) for x in pu.swept_pending]
        sub.pending_items = restored + sub.pending_items

    def cancel_subscription(self, sub_id: str, p: Json) -> Json:
        only(p, {"invoice_now", "prorate", "cancellation_details"})
        sub = self.s.subscription(sub_id)
        if sub.status == "canceled":
            raise StripeError.invalid(
                f"This subscription has already been canceled: {sub.id}", "id"
            )
        if "cancellation_details" in p:
            sub.cancellation_details.update(p["cancellation_details"])
        self._cancel(sub, p.get("invoice_now", False), p.get("prorate", False))
        return self.s.render_subscription(sub)

    def _cancel(self, sub: Subscription, invoice_now: bool, prorate_: bool) -> None:
        now = self.s.now
        before = self.s.render_subscription(sub)
        if sub.pending_update is not None:
            self._discard_pending_update(sub)
        if prorate_ and now < sub.period_end:
            for it in sub.items:
                if it.billed_amount:
                    amount = prorate(it.billed_amount, it.billed_from, sub.period_end, now)
                    billed = self.s.prices[it.billed_price]
                    sub.pending_items.append(
                        self._proration_line(
                            sub.id, it.id, billed, it.billed_quantity, -amount, now,
                            sub.period_end, False,
                        )
                    )  # fmt: skip
        if invoice_now and sub.pending_items:
            inv = self._build_invoice(sub, sub.pending_items, "subscription_cycle", (now, now))
            sub.pending_items = []
            sub.latest_invoice = inv.id
            self._commit_invoice(inv, self._outcome(inv, "allow_incomplete", self._haystacks()))
        sub.status, sub.canceled_at, sub.ended_at = "canceled", now, now
        if sub.schedule is not None:
            sched = self.s.schedules[sub.schedule]
            if sched.status in ("active", "not_started"):
                sched.status, sched.canceled_at = "canceled", now
                self.s.emit("subscription_schedule.canceled", self.s.render_schedule(sched))
        after = self.s.render_subscription(sub)
        self.s.emit("customer.subscription.deleted", after, self.s.diff(before, after))

    def create_preview(self, p: Json) -> Json:
        only(p, {"customer", "subscription", "subscription_details"})
        details = p.get("subscription_details", {})
        only(details, {"items", "proration_date", "proration_behavior"}, "subscription_details")
        behavior = details.get("proration_behavior", "create_prorations")
        if "subscription" not in p:
            return self._preview_new(p, details)
        sub = self.s.subscription(p["subscription"], "subscription")
        if "customer" in p and p["customer"] != sub.customer:
            raise StripeError.invalid(
                "The subscription does not belong to this customer.", "customer"
            )
        if sub.status == "canceled":
            raise StripeError(
                404,
                {
                    "type": "invalid_request_error",
                    "code": "invoice_upcoming_none",
                    "message": "No upcoming invoices for customer: " + sub.customer,
                },
            )
        pd = details.get("proration_date", self.s.now)
        self._check_proration_date(sub, pd, "subscription_details[proration_date]")
        plan = None
        if "items" in details:
            plan = self.plan_items(
                sub, details["items"], pd, behavior, "subscription_details[items]", preview=True
            )
        pending = [dataclasses.replace(x) for x in sub.pending_items]
        if plan is not None and (
            plan.period is not None or (behavior == "always_invoice" and plan.lines)
        ):
            inv = self._build_invoice(
                sub, pending + plan.lines, "upcoming", (self.s.now, self.s.now), True, pd
            )
            return self.s.render_invoice(inv)
        items = plan.items if plan is not None else sub.items
        lines = pending + (plan.lines if plan is not None else [])
        start = sub.period_end
        end = boundary(sub.anchor, sub.interval, sub.interval_count, sub.period_k + 1)
        if not sub.cancel_at_period_end:
            for it in items:
                price = self.s.prices[it.price]
                line = self._full_line(sub.id, it.id, price, it.quantity, start, end)
                lines.append(dataclasses.replace(line, id=self.s.ids.new("il_tmp")))
        inv = self._build_invoice(
            sub, lines, "upcoming", (sub.period_start, sub.period_end), True, pd
        )
        inv.created = sub.period_end
        return self.s.render_invoice(inv)

    def _preview_new(self, p: Json, details: Json) -> Json:
        if "customer" not in p or "items" not in details:
            raise StripeError.invalid(
                "Provide `subscription`, or `customer` and `subscription_details[items]`.",
                "subscription",
            )
        customer = self.s.customer(p["customer"], "customer")
        now = self.s.now
        lines: list[Line] = []
        first: Price | None = None
        for i, ip in enumerate(details["items"]):
            pre = f"subscription_details[items][{i}]"
            only(ip, {"price", "quantity"}, pre)
            if "price" not in ip:
                raise StripeError.invalid(
                    f"Missing required param: {pre}[price].", f"{pre}[price]", "parameter_missing"
                )
            price = self._recurring_price(ip["price"], f"{pre}[price]")
            first = first or price
            end = boundary(now, price.interval or "month", price.interval_count, 1)
            line = self._full_line("", "", price, ip.get("quantity", 1), now, end)
            lines.append(
                dataclasses.replace(
                    line, id=self.s.ids.new("il_tmp"), subscription=None, subscription_item=None
                )
            )
        assert first is not None
        ghost = Subscription(
            id="",
            created=now,
            customer=customer.id,
            currency=first.currency,
            items=[],
            interval=first.interval or "month",
            interval_count=first.interval_count,
            anchor=now,
            period_k=1,
            period_start=now,
            period_end=now,
            basis_start=now,
        )
        inv = self._build_invoice(ghost, lines, "upcoming", (now, now), True)
        inv.subscription = None
        return self.s.render_invoice(inv)


def _refuse_unpaid(outcome: str, keep_state: bool = False) -> None:
    """A payment that did not go through where nothing may wait for it: 402."""
    if outcome == "declined":
        raise StripeError.card_declined(keep_state=keep_state)
    if outcome == "requires_action":
        raise StripeError.requires_action(keep_state=keep_state)
