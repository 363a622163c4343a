"""Quote any allowed plan change for an account, at a pinned proration date."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from service.adapters.orm import AccountRow
from service.domain.accounts import AccountStatus, Plan, moved_to_tier
from service.domain.catalog import Catalog, Interval
from service.domain.errors import Conflict, ValidationFailed
from service.domain.periods import Period
from service.domain.quotes import Quote, current_billed, quote_change
from service.services.accounts import plan_of


@dataclass(frozen=True, slots=True)
class TargetChange:
    """What the customer asks for; fields left None keep the current plan's value."""

    tier: str | None = None
    seats: int | None = None
    addons: dict[str, int] | None = None
    interval: Interval | None = None

    def applied_to(self, catalog: Catalog, plan: Plan) -> Plan:
        """The full target plan (see domain.accounts.moved_to_tier for a tier change)."""
        if self.tier is not None and self.tier != plan.tier:
            plan = moved_to_tier(catalog, plan, self.tier, seats=self.seats, addons=self.addons)
        return plan.with_changes(interval=self.interval, seats=self.seats, addons=self.addons)


class BillingPeriodEnded(Conflict):
    code = "billing_period_ended"
    title = "Billing period ended"


class AccountNotBillable(Conflict):
    code = "account_not_billable"
    title = "Account cannot change plan"


def pinned_proration_date(now: datetime, requested: datetime | None, period: Period) -> datetime:
    """The proration date a quote pins: now by default, whole seconds (as Stripe counts)."""
    moment = (requested or now).replace(microsecond=0)
    if requested is not None and not period.start <= moment <= now:
        raise ValidationFailed(
            "proration_date must lie between the current period start and now",
            field="proration_date",
            code="proration_date_out_of_range",
        )
    return moment


def account_period(account: AccountRow, now: datetime) -> Period:
    period = Period(account.current_period_start, account.current_period_end)
    if now >= period.end:
        raise BillingPeriodEnded(
            "the account's billing period has ended and has not been renewed yet",
            code="billing_period_ended",
        )
    return period


def quote_for_account(
    catalog: Catalog,
    account: AccountRow,
    target: Plan,
    now: datetime,
    requested_proration_date: datetime | None = None,
) -> Quote:
    if account.status not in (AccountStatus.active, AccountStatus.trialing):
        raise AccountNotBillable(
            f"the account is {account.status}; only active accounts change plan self-serve"
        )
    current = plan_of(account)
    period = account_period(account, now)
    proration_date = pinned_proration_date(now, requested_proration_date, period)
    return quote_change(
        catalog,
        current,
        period,
        current_billed(catalog, current, period),
        target,
        proration_date,
    )
