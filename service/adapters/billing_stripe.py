"""The BillingGateway over Stripe: previews, applies and schedules plan changes on Stripe."""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from typing import Any

import stripe

from service.adapters.stripe_api import (
    SUBSCRIPTION_EXPAND,
    BillingRejected,
    RemoteItem,
    RemoteSubscription,
    StripeBilling,
    as_json,
    stripe_errors,
    unix,
    utc,
)
from service.domain.accounts import Plan, plan_lines
from service.domain.catalog import Interval
from service.domain.errors import Conflict, CurrencyMismatch, PaymentDeclined
from service.domain.money import Money
from service.domain.periods import Period
from service.domain.proration import BilledLine, ProrationLine
from service.domain.quotes import Quote
from service.ports import (
    AppliedChange,
    BillingAccount,
    PaymentAction,
    PaymentState,
    Preview,
    ScheduledChange,
)

Json = dict[str, Any]
log = logging.getLogger("upshift.stripe")


class BillingOutOfSync(Conflict):
    code = "billing_out_of_sync"
    title = "Billing state differs from Stripe"


class AccountNotLinked(Conflict):
    code = "account_not_linked"
    title = "Account has no Stripe subscription"


class StripeBillingGateway:
    """The BillingGateway over Stripe; every change is priced and applied by Stripe itself."""

    name = "stripe"
    remote = True

    def __init__(self, billing: StripeBilling) -> None:
        self.billing = billing
        self.client = billing.client
        self.catalog = billing.catalog
        self.prices = billing.prices

    def preview(self, account: BillingAccount, quote: Quote) -> Preview:
        """Stripe's invoice for the change at the quote's proration date. `amount_due` is what
        Stripe will collect, so a customer's credit balance is already taken off it."""
        remote = self._subscription(account, quote)
        landed = self._landed_invoice(remote, quote)
        if landed is not None:
            # Our own earlier attempt under this request already changed Stripe (the answer was
            # lost): its invoice is Stripe's price of exactly this change.
            return self._preview_of(landed)
        changes = self.item_changes(remote, quote.target)
        if not changes:
            raise BillingOutOfSync(
                "Stripe already has this plan for the subscription; the account is brought up "
                "to date by Stripe's webhook"
            )
        with stripe_errors("preview the change"):
            invoice = self.client.v1.invoices.create_preview(
                params={
                    "subscription": remote.id,
                    "subscription_details": {
                        "items": changes,
                        "proration_date": unix(quote.proration_date),
                        "proration_behavior": "always_invoice",
                    },
                }
            )
        return self._preview_of(as_json(invoice))

    def _preview_of(self, invoice: Json) -> Preview:
        """Stripe's price of the change, in the invoice's own currency: its lines, its total
        before tax (after discounts), its tax, and `amount_due`, what is left once the
        customer's credit balance is applied (docs.stripe.com/api/invoices/object)."""
        tax = sum(int(tax["amount"]) for tax in invoice.get("total_taxes") or [])
        return Preview(
            self._lines(invoice),
            self._money(invoice["amount_due"], invoice),
            total_excluding_tax=self._money(
                invoice.get("total_excluding_tax") or invoice["total"] - tax, invoice
            ),
            tax=self._money(tax, invoice),
        )

    def payment_state(self, account: BillingAccount) -> PaymentState:
        remote = self._subscription(account)
        pending = remote.latest_invoice if remote.has_pending_update else None
        return PaymentState(plan=remote.plan, pending_invoice=pending, mrr=remote.mrr)

    def apply(self, account: BillingAccount, quote: Quote, idempotency_key: str) -> AppliedChange:
        remote = self._subscription(account, quote)
        invoice = self._landed_invoice(remote, quote)
        if invoice is None:
            try:
                remote, invoice = self._update(remote, quote, idempotency_key)
            except stripe.APIError as exc:
                if (exc.http_status or 0) < 500:
                    raise
                # Stripe keeps a 5xx under its idempotency key and answers every retry with it
                # for 24 hours (docs.stripe.com/api/idempotent_requests: "retries with the same
                # key return the saved response, including 500 errors"). So: did the change land
                # after all? If not, one more try under a key of its own, once for this call.
                log.warning("Stripe answered %s to the change; reconciling", exc.http_status)
                remote = self._subscription(account, quote)
                invoice = self._landed_invoice(remote, quote)
                if invoice is None:
                    attempt = f"{idempotency_key}:after-{exc.request_id or uuid.uuid4().hex}"
                    with stripe_errors("apply the change"):
                        remote, invoice = self._update(remote, quote, attempt[:255])
        # A change applied now, or waiting only for the customer's payment, supersedes a
        # downgrade waiting for the period end.
        self._release_schedule(remote, idempotency_key)
        action = self._payment_action(remote, invoice)
        return AppliedChange(
            invoice_id=invoice["id"] if invoice else None,
            amount_charged=(
                self._money(invoice["amount_paid"], invoice)
                if invoice
                else Money.zero(remote.currency)
            ),
            subscription_id=remote.id,
            customer_id=remote.customer_id,
            period=remote.period,
            billed=self._billed(quote, invoice),
            action=action,
            mrr=remote.mrr,
        )

    def schedule(
        self, account: BillingAccount, quote: Quote, idempotency_key: str
    ) -> ScheduledChange:
        """End-of-term changes as a subscription schedule: this period as it is, then the
        target; a newer scheduled change replaces the second phase."""
        remote = self._subscription(account, quote)
        schedules = self.client.v1.subscription_schedules
        with stripe_errors("schedule the change"):
            if remote.schedule is None:
                schedule = schedules.create(
                    params={"from_subscription": remote.id},
                    options={"idempotency_key": f"{idempotency_key}:create"},
                )
            else:
                schedule = schedules.retrieve(remote.schedule)
            raw = as_json(schedule)
            current = self._current_phase(raw)
            target = [
                {"price": self.prices.price_id(line.lookup_key), "quantity": line.quantity}
                for line in plan_lines(self.catalog, quote.target)
            ]
            # Stripe replaces the phases whole: whatever the current phase carries (a coupon,
            # tax settings, metadata, set in the Dashboard or copied from the subscription)
            # is sent again, or it is gone. The next phase keeps them too: a downgrade changes
            # the plan, not the customer's discount or tax treatment.
            kept = _kept_phase_settings(current)
            schedules.update(
                raw["id"],
                params={
                    "end_behavior": "release",
                    "phases": [
                        {
                            "start_date": current["start_date"],
                            "end_date": current["end_date"],
                            "items": [_phase_item(item) for item in current["items"]],
                            **kept,
                        },
                        {
                            "items": target,
                            "duration": {
                                "interval": quote.target.interval.value,
                                "interval_count": 1,
                            },
                            **kept,
                        },
                    ],
                },
                options={"idempotency_key": f"{idempotency_key}:phases"},
            )
        return ScheduledChange(schedule_id=raw["id"], effective_at=utc(current["end_date"]))

    # -- items ---------------------------------------------------------------------------

    def item_changes(self, remote: RemoteSubscription, target: Plan) -> list[Json]:
        """The `items` of an update from the subscription as it is to `target`, in line order.

        Deterministic for one subscription state, so a retry sends the very same request (and
        Stripe replays it under the same idempotency key). A line the target drops is set to
        quantity 0 rather than deleted: pending updates (`pending_if_incomplete`) accept only
        id, price and quantity; a zero-quantity item bills nothing and maps to no line.
        """
        wanted = {line.key: line for line in plan_lines(self.catalog, target)}
        by_key: dict[str, list[RemoteItem]] = {}
        for item in remote.items:
            if item.line is None:
                if item.quantity and remote.plan and remote.plan.interval != target.interval:
                    raise BillingRejected(
                        f"subscription item {item.id} has a price Upshift does not sell, so its "
                        "billing interval cannot be changed here"
                    )
                continue
            by_key.setdefault(item.line.key, []).append(item)
        changes: list[Json] = []
        for key in sorted(set(wanted) | set(by_key)):
            items = by_key.get(key, [])
            line = wanted.get(key)
            if line is None:
                changes.extend(self._emptied(item, target.interval) for item in items)
                continue
            if not items:
                price = self.prices.price_id(line.lookup_key)
                changes.append({"price": price, "quantity": line.quantity})
                continue
            first, *rest = items
            change: Json = {"id": first.id}
            assert first.line is not None
            if first.line.lookup_key != line.lookup_key:
                change["price"] = self.prices.price_id(line.lookup_key)
            if first.quantity != line.quantity:
                change["quantity"] = line.quantity
            changes.append(change)
            changes.extend(self._emptied(item, target.interval) for item in rest)
        return [change for change in changes if len(change) > 1]

    def _emptied(self, item: RemoteItem, interval: Interval) -> Json:
        change: Json = {"id": item.id}
        assert item.line is not None
        if item.line.interval != interval:
            # Every item of a subscription bills on one interval, the dropped ones included.
            counterpart = self.prices.counterpart(item.line, interval)
            if counterpart is None:
                raise BillingRejected(
                    f"'{item.line.lookup_key}' has no {interval.value} price to move to"
                )
            change["price"] = self.prices.price_id(counterpart)
        if item.quantity:
            change["quantity"] = 0
        return change

    # -- helpers -------------------------------------------------------------------------

    def _subscription(
        self, account: BillingAccount, quote: Quote | None = None
    ) -> RemoteSubscription:
        """The account's subscription, refused before any change when Stripe bills it in
        another currency than the quote's: the catalog has one currency, so Upshift can neither
        price the change in the subscription's nor record it in the ledger as if it were in
        the quote's."""
        if account.subscription_id is None:
            raise AccountNotLinked(
                f"account '{account.account_id}' has no Stripe subscription to change",
            )
        remote = self.billing.subscription(account.subscription_id)
        if quote is None:
            return remote
        quoted = quote.new_recurring.currency
        if remote.currency != quoted:
            raise CurrencyMismatch(
                f"Stripe bills subscription {remote.id} in {remote.currency}, but Upshift sells "
                f"in {quoted} (the catalog's currency); the change is refused rather than "
                f"charged or recorded in the wrong currency",
                field="currency",
            )
        return remote

    def _landed_invoice(self, remote: RemoteSubscription, quote: Quote) -> Json | None:
        """The invoice of this very change when Stripe already has it, else None."""
        if (
            remote.plan is None
            or not remote.plan.matches(quote.target)
            or remote.latest_invoice is None
        ):
            return None
        with stripe_errors("read the latest invoice"):
            invoice = as_json(self.client.v1.invoices.retrieve(remote.latest_invoice))
        if invoice.get("status") == "paid" and self._is_change_invoice(invoice, quote):
            return invoice
        return None

    def _is_change_invoice(self, invoice: Json, quote: Quote) -> bool:
        """Whether Stripe issued `invoice` for this very change: Stripe's proration guide
        identifies it by `billing_reason` "subscription_update" and proration lines that start at
        the proration date. (`subscription_proration_date` is "only set for upcoming invoices that
        preview prorations", never on the invoice a change issues.)"""
        if invoice.get("billing_reason") != "subscription_update":
            return False
        pinned = unix(quote.proration_date)
        return any(
            ((raw.get("parent") or {}).get("subscription_item_details") or {}).get("proration")
            and raw["period"]["start"] == pinned
            for raw in self._line_data(invoice)
        )

    def _line_data(self, invoice: Json) -> list[Json]:
        """Every line of the invoice: it embeds the first page only (`lines.has_more`); the rest
        is read with invoices.line_items.list. Kept on the invoice once read."""
        lines = invoice["lines"]
        data = list(lines["data"])
        if lines.get("has_more") and invoice.get("id"):
            with stripe_errors("read the invoice's lines"):
                while True:
                    page = self.client.v1.invoices.line_items.list(
                        invoice["id"], params={"limit": 100, "starting_after": data[-1]["id"]}
                    )
                    data.extend(as_json(line) for line in page.data)
                    if not page.has_more:
                        break
            invoice["lines"] = {**lines, "data": data, "has_more": False}
        return data

    def _update(
        self, remote: RemoteSubscription, quote: Quote, idempotency_key: str
    ) -> tuple[RemoteSubscription, Json | None]:
        """Change the subscription's items now, prorated at the quote's date; returns it and the
        change's invoice (None when nothing was prorated). A 5xx from Stripe is raised as is
        (stripe.APIError): the caller decides how to retry it; every other error in the
        domain's words."""
        changes = self.item_changes(remote, quote.target)
        if not changes:
            raise BillingOutOfSync(
                "Stripe already has this plan for the subscription; the account is brought "
                "up to date by Stripe's webhook"
            )
        try:
            updated = self.client.v1.subscriptions.update(
                remote.id,
                params={
                    "items": changes,
                    "proration_date": unix(quote.proration_date),
                    "proration_behavior": "always_invoice",
                    # A failed payment leaves the items as they are (Stripe keeps the change
                    # as a pending update until it expires or the invoice is paid).
                    "payment_behavior": "pending_if_incomplete",
                    # The payment's PaymentIntent tells a decline (requires_payment_method)
                    # from a payment waiting for the customer's authentication
                    # (requires_action): docs.stripe.com/billing/subscriptions/pending-updates.
                    "expand": [
                        "latest_invoice.payments.data.payment.payment_intent",
                        *SUBSCRIPTION_EXPAND,
                    ],
                },
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            if isinstance(exc, stripe.APIError) and (exc.http_status or 0) >= 500:
                raise
            with stripe_errors("apply the change"):
                raise
        raw = as_json(updated)
        latest = raw.get("latest_invoice")
        raw["latest_invoice"] = latest["id"] if isinstance(latest, dict) else latest
        remote = self.billing.remote(raw)
        invoice = latest if isinstance(latest, dict) else None
        if remote.has_pending_update and not self._needs_authentication(invoice):
            raise PaymentDeclined(
                "the payment for this change failed, so the subscription is unchanged; "
                "update the payment method and try again with a new Idempotency-Key",
                code="payment_failed",
            )
        if invoice is not None and not self._is_change_invoice(invoice, quote):
            invoice = None  # nothing was prorated, so Stripe issued no invoice for it
        return remote, invoice

    @staticmethod
    def _needs_authentication(invoice: Json | None) -> bool:
        """Whether the open invoice's payment waits for the customer's authentication (3-D
        Secure): its PaymentIntent is `requires_action`, not declined."""
        if invoice is None or invoice.get("status") != "open":
            return False
        for payment in (invoice.get("payments") or {}).get("data") or []:
            intent = (payment.get("payment") or {}).get("payment_intent")
            if isinstance(intent, dict) and intent.get("status") == "requires_action":
                return True
        return False

    @staticmethod
    def _payment_action(remote: RemoteSubscription, invoice: Json | None) -> PaymentAction | None:
        """The customer's step still owed for a change Stripe keeps as a pending update: the
        open invoice's hosted page, where the customer authenticates and pays ("the
        hosted_invoice_url ... contains a button for the customer to complete the payment":
        support.stripe.com/questions/completing-a-next-action-for-paymentintents-created-with-
        one-off-invoices). Stripe applies the update once the invoice is paid."""
        if not remote.has_pending_update or invoice is None:
            return None
        return PaymentAction(
            invoice_id=str(invoice["id"]),
            hosted_url=invoice.get("hosted_invoice_url"),
            expires_at=remote.pending_update_expires_at,
        )

    def _release_schedule(self, remote: RemoteSubscription, idempotency_key: str) -> None:
        """A change applied now supersedes a downgrade waiting for the period end."""
        if remote.schedule is None:
            return
        with stripe_errors("release the scheduled change"):
            schedule = self.client.v1.subscription_schedules.retrieve(remote.schedule)
            if schedule.status in ("active", "not_started"):
                self.client.v1.subscription_schedules.release(
                    remote.schedule, options={"idempotency_key": f"{idempotency_key}:release"}
                )

    @staticmethod
    def _current_phase(schedule: Json) -> Json:
        current = schedule.get("current_phase") or {}
        for phase in schedule["phases"]:
            if phase["start_date"] == current.get("start_date"):
                return phase
        return schedule["phases"][0]

    @staticmethod
    def _money(minor: int, invoice: Json) -> Money:
        """An amount of `invoice`, in the currency Stripe reports for it (lower case there)."""
        return Money(int(minor), str(invoice["currency"]).upper())

    def _lines(self, invoice: Json) -> tuple[ProrationLine, ...]:
        """Stripe's invoice lines as ProrationLines, worded and ordered as the local engine's
        (credits then charges, by line key), so a preview equals the local quote exactly when
        the amounts, periods and quantities agree."""
        lines: list[ProrationLine] = []
        for raw in self._line_data(invoice):
            amount = int(raw["amount"])
            if amount == 0:
                continue
            price_id = ((raw.get("pricing") or {}).get("price_details") or {}).get("price")
            line = self.prices.line_of_id(price_id) if price_id else None
            details = (raw.get("parent") or {}).get("subscription_item_details") or {}
            proration = bool(details.get("proration"))
            if line is None:
                key, description = f"stripe:{price_id}", str(raw.get("description") or "")
            elif not proration:
                key, description = line.key, line.description
            else:
                word = "Unused time on" if amount < 0 else "Remaining time on"
                key, description = line.key, f"{word} {line.description}"
            lines.append(
                ProrationLine(
                    key=key,
                    description=description,
                    amount=self._money(amount, invoice),
                    period=Period(utc(raw["period"]["start"]), utc(raw["period"]["end"])),
                    proration=proration,
                    quantity=int(raw.get("quantity") or 0),
                )
            )
        lines.sort(key=lambda line: (line.amount.minor >= 0, line.key))
        return tuple(lines)

    def _billed(self, quote: Quote, invoice: Json | None) -> tuple[BilledLine, ...]:
        """What was charged per line: the quote's, with Stripe's own charge where it has one."""
        charged = {
            line.key: line
            for line in (self._lines(invoice) if invoice else ())
            if line.amount.minor > 0
        }
        billed = []
        for line in quote.new_billed:
            stripe_line = charged.get(line.key)
            if stripe_line is not None:
                line = replace(
                    line,
                    billed_minor=stripe_line.amount.minor,
                    billed_from=stripe_line.period.start,
                )
            billed.append(line)
        return tuple(billed)


def _id(value: Any) -> str | None:
    return value.get("id") if isinstance(value, dict) else value


def _phase_item(item: Json) -> Json:
    """A schedule phase's item as the update's parameter: its price, quantity and metadata."""
    param: Json = {"price": _id(item["price"]), "quantity": item.get("quantity", 1)}
    if item.get("metadata"):
        param["metadata"] = dict(item["metadata"])
    return param


def _kept_phase_settings(phase: Json) -> Json:
    """The settings of a schedule phase that a rewrite of the phases must send again."""
    kept: Json = {}
    if phase.get("metadata"):
        kept["metadata"] = dict(phase["metadata"])
    discounts = [
        {
            key: _id(discount[key])
            for key in ("coupon", "discount", "promotion_code")
            if discount.get(key)
        }
        for discount in phase.get("discounts") or []
    ]
    if discounts:
        kept["discounts"] = discounts
    tax_rates = [_id(rate) for rate in phase.get("default_tax_rates") or []]
    if tax_rates:
        kept["default_tax_rates"] = tax_rates
    automatic_tax = phase.get("automatic_tax")
    if automatic_tax:
        kept["automatic_tax"] = {"enabled": bool(automatic_tax.get("enabled"))}
        if automatic_tax.get("liability"):
            liability = automatic_tax["liability"]
            kept["automatic_tax"]["liability"] = {
                key: _id(value) for key, value in liability.items() if value
            }
    return kept
