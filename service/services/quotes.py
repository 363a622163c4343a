"""Quote any allowed plan change for an account, at a pinned proration date."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime

from service.domain.accounts import AccountStatus, Plan, moved_to_tier
from service.domain.catalog import Catalog, Interval, Timing
from service.domain.errors import Conflict, CurrencyMismatch, ValidationFailed
from service.domain.periods import Period
from service.domain.proration import BilledLine
from service.domain.quotes import (
    PreparedChange,
    PriceBreakdown,
    Quote,
    change_book,
    free_during_trial,
    price_change,
)
from service.ports import BillingGateway
from service.services.account_state import AccountState

log = logging.getLogger("upshift.quotes")


@dataclass(frozen=True, slots=True)
class TargetChange:
    """What the customer asks for; fields left None keep the current plan's value."""

    tier: str | None = None
    seats: int | None = None
    addons: dict[str, int] | None = None
    interval: Interval | None = None
    # Not from customers: a catalog migration moves the plan to another catalog version, and
    # may defer a change that would apply at once to the end of the term.
    version: str | None = None
    at_term_end: bool = False

    def applied_to(self, catalog: Catalog, plan: Plan) -> Plan:
        """The full target plan (see domain.accounts.moved_to_tier for a tier change)."""
        if self.tier is not None and self.tier != plan.tier:
            plan = moved_to_tier(catalog, plan, self.tier, seats=self.seats, addons=self.addons)
        plan = plan.with_changes(interval=self.interval, seats=self.seats, addons=self.addons)
        return plan if self.version is None else plan.at_version(self.version)


class BillingPeriodEnded(Conflict):
    code = "billing_period_ended"
    title = "Billing period ended"


class AccountNotBillable(Conflict):
    code = "account_not_billable"
    title = "Account cannot change plan"


def pinned_proration_date(now: datetime, requested: datetime | None, period: Period) -> datetime:
    """The proration date a quote pins: now by default, whole seconds (as Stripe counts)."""
    moment = (requested or now).replace(microsecond=0)
    if requested is None:
        moment = max(moment, period.start)  # a period may start mid-second (stored before)
    elif not period.start <= moment <= now:
        raise ValidationFailed(
            "proration_date must lie between the current period start and now",
            field="proration_date",
            code="proration_date_out_of_range",
        )
    return moment


def quote_for_account(
    catalog: Catalog,
    account: AccountState,
    billed: tuple[BilledLine, ...],
    target: Plan,
    now: datetime,
    requested_proration_date: datetime | None = None,
    *,
    at_term_end: bool = False,
) -> Quote:
    """Price `target` for the account whose lines this period were billed as `billed`;
    `at_term_end` defers a change that would apply at once to the end of the term (nothing due
    now, applied at renewal: a catalog migration's end_of_term move)."""
    change = prepare_for_account(catalog, account, target)
    if at_term_end and change.timing is Timing.immediate:
        change = replace(change, timing=Timing.end_of_term)
    return price_for_account(change, account, billed, now, requested_proration_date)


def prepare_for_account(catalog: Catalog, account: AccountState, target: Plan) -> PreparedChange:
    """The part of a quote that does not depend on when it is priced: may the account change to
    `target` at all, and how (AccountNotBillable or ChangeNotAllowed if not)."""
    if account.status not in (AccountStatus.active, AccountStatus.trialing):
        raise AccountNotBillable(
            f"the account is {account.status}; only active accounts change plan self-serve"
        )
    if account.currency != catalog.currency:
        # Billed in another currency (Stripe's subscription, synced by its webhooks): the
        # catalog has no price in it, so no change can be priced, let alone charged.
        raise CurrencyMismatch(
            f"the account is billed in {account.currency}, but the catalog sells in "
            f"{catalog.currency}; its plan changes are made in Stripe",
            field="currency",
        )
    return change_book(catalog).prepare(account.plan, target)


def price_for_account(
    change: PreparedChange,
    account: AccountState,
    billed: tuple[BilledLine, ...],
    now: datetime,
    requested_proration_date: datetime | None = None,
) -> Quote:
    """A prepared change priced for the account at `now` (or the requested proration date);
    `now` is the service's, and the account's billing time stands in for it (a Stripe test
    clock's frozen time: AccountState.billing_time), so the offer, the confirm and Stripe
    agree on the proration date."""
    now = account.billing_time(now)
    if now >= account.period.end:
        # Local billing renews before quoting; with Stripe the renewal webhook is still due.
        raise BillingPeriodEnded("the account's billing period has ended and is not renewed yet")
    proration_date = pinned_proration_date(now, requested_proration_date, account.period)
    quote = price_change(change, account.period, billed, proration_date)
    if account.status is AccountStatus.trialing and quote.timing is Timing.immediate:
        return free_during_trial(quote, account.period)
    return quote


def authoritative_quote(
    gateway: BillingGateway | None, account: AccountState, quote: Quote
) -> Quote:
    """The quote the customer sees. With Stripe, Stripe's own preview of the same change at the
    same proration date is the authority: a disagreement with the local engine is logged and
    Stripe's lines and amount are shown (and bound into the offer token). No gateway, or the
    local one, means the local engine is the authority."""
    if gateway is None or gateway.name == "local" or quote.timing is not Timing.immediate:
        return quote
    preview = gateway.preview(account.billing, quote)
    breakdown = None
    if preview.total_excluding_tax is not None and preview.tax is not None:
        breakdown = PriceBreakdown.of(
            quote.amount_due, preview.total_excluding_tax, preview.tax, preview.amount_due
        )
    if preview.amount_due == quote.amount_due and preview.lines == quote.lines:
        return replace(quote, breakdown=breakdown)
    log.warning(
        "local proration disagrees with %s for account %s: %s vs %s",
        gateway.name,
        account.id,
        quote.amount_due,
        preview.amount_due,
    )
    return replace(quote, lines=preview.lines, amount_due=preview.amount_due, breakdown=breakdown)
