"""An immutable snapshot of an account's billing state, safe to cache and share across threads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from service.adapters.account_reading import AccountRecord
from service.adapters.change_feed import changed_accounts, mark_changed
from service.adapters.orm import AccountRow
from service.adapters.usage_repository import AccountColumns
from service.domain.accounts import AccountStatus, Plan, pays
from service.domain.catalog import Catalog, Interval
from service.domain.ledger import PlanSnapshot
from service.domain.money import Money
from service.domain.periods import Period
from service.domain.quotes import plan_mrr
from service.ports import BillingAccount

# What a transaction changed, for the offer caches of every process (see adapters.change_feed).
__all__ = [
    "AccountState",
    "account_mrr",
    "changed_accounts",
    "mark_changed",
    "plan_of",
    "plan_snapshot",
    "state_of",
    "versions_after",
    "write_plan",
]


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
    # The frozen time of the Stripe test clock the subscription lives on (test mode), synced
    # from Stripe; None: billing runs on the service's clock.
    frozen_time: datetime | None = None

    def billing_time(self, now: datetime) -> datetime:
        """The account's billing "now": what proration dates are pinned to and the period is
        checked against. The service clock's `now`, unless the subscription lives on a Stripe
        test clock, whose objects all stand at its frozen time (docs.stripe.com/api/
        test_clocks/object: "Time at which all objects belonging to this clock are frozen")."""
        return now if self.frozen_time is None else self.frozen_time

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


def state_of(row: AccountRow | AccountRecord) -> AccountState:
    return AccountState(
        id=row.id,
        version=row.version,
        status=AccountStatus(row.status),
        currency=row.currency,
        plan=plan_of(row),
        period=Period(row.current_period_start, row.current_period_end),
        customer_id=row.billing_customer_id,
        subscription_id=row.billing_subscription_id,
        frozen_time=row.billing_frozen_time,
    )


# What an account row is worth: its plan, the ledger's view of it, and its MRR. Used by the
# account, signal, upgrade, renewal and webhook use cases alike.


def plan_of(row: AccountRow | AccountColumns | AccountRecord) -> Plan:
    return Plan(
        tier=row.tier,
        interval=Interval(row.interval),
        seats=row.seats,
        addons=dict(row.addons),
        version=row.catalog_version,
    )


def versions_after(plan: Plan, row: AccountRow | AccountColumns | AccountRecord) -> tuple[str, str]:
    """The account's (catalog version, limits version) once it is on `plan`. A plan with no
    version keeps the row's; when the price version moves the limits follow: a tier change or a
    migration moves both (only a limits rollout moves limits alone)."""
    if plan.version and plan.version != row.catalog_version:
        return plan.version, plan.version
    return row.catalog_version, row.limits_version


def write_plan(row: AccountRow, plan: Plan) -> None:
    """Put the plan, and the catalog versions it brings (versions_after), on the account's row."""
    row.tier = plan.tier
    row.interval = plan.interval.value
    row.seats = plan.seats
    row.addons = dict(sorted(plan.addons.items()))
    row.catalog_version, row.limits_version = versions_after(plan, row)


def plan_snapshot(plan: AccountRow | Plan) -> PlanSnapshot:
    """What the ledger records of a plan (an account's, or one it is moving to), with the catalog
    version its prices come from: the same items at another version is a price uplift."""
    version = plan.catalog_version if isinstance(plan, AccountRow) else plan.version
    return PlanSnapshot(tier=plan.tier, seats=plan.seats, addons=dict(plan.addons), version=version)


def account_mrr(catalog: Catalog, row: AccountRow | AccountColumns | AccountRecord) -> Money:
    """Monthly recurring revenue of the account's plan; zero unless it is paying."""
    if not pays(row.status):
        return Money.zero(row.currency)
    return plan_mrr(catalog, plan_of(row))
