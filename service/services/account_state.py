"""An immutable snapshot of an account's billing state, safe to cache and share across threads."""

from __future__ import annotations

from dataclasses import dataclass

from service.adapters.change_feed import changed_accounts, mark_changed
from service.adapters.orm import AccountRow
from service.domain.accounts import AccountStatus, Plan
from service.domain.catalog import Interval
from service.domain.periods import Period
from service.ports import BillingAccount

# What a transaction changed, for the offer caches of every process (see adapters.change_feed).
__all__ = ["AccountState", "changed_accounts", "mark_changed", "state_of"]


@dataclass(frozen=True, slots=True)
class AccountState:
    id: str
    version: int
    status: AccountStatus
    currency: str
    plan: Plan
    period: Period
    customer_id: str | None
    subscription_id: str | None

    @property
    def billing(self) -> BillingAccount:
        return BillingAccount(
            account_id=self.id,
            currency=self.currency,
            plan=self.plan,
            period=self.period,
            customer_id=self.customer_id,
            subscription_id=self.subscription_id,
        )


def state_of(row: AccountRow) -> AccountState:
    return AccountState(
        id=row.id,
        version=row.version,
        status=AccountStatus(row.status),
        currency=row.currency,
        plan=Plan(
            tier=row.tier,
            interval=Interval(row.interval),
            seats=row.seats,
            addons=dict(row.addons),
        ),
        period=Period(row.current_period_start, row.current_period_end),
        customer_id=row.billing_customer_id,
        subscription_id=row.billing_subscription_id,
    )
