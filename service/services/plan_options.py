"""What a pricing table shows one account: every tier at every interval, with what it would cost
the account to move there now.

Priced by the local Stripe-exact engine, like the offers a page loads (a pricing table never
waits on Stripe or spends its rate limit); the upgrade re-quotes with the billing provider under
the account's row lock and refuses (409) an amount that moved, so what the table shows is what
is charged or nothing is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from service.domain.accounts import Plan, recurring_amount
from service.domain.catalog import Catalog, Interval, Timing
from service.domain.errors import DomainError
from service.domain.money import Money
from service.domain.proration import BilledLine
from service.domain.quotes import Quote
from service.services.account_state import AccountState
from service.services.quotes import TargetChange, quote_for_account


class OptionAction(StrEnum):
    current = "current"  # the account's plan as it is
    upgrade = "upgrade"  # self-serve now, `quote.amount_due` due today
    downgrade = "downgrade"  # self-serve, scheduled for the end of the term (nothing due now)
    contact_sales = "contact_sales"  # a sales-assisted tier above the account's
    unavailable = "unavailable"  # no path from the account's plan (`reason` says why)


@dataclass(frozen=True, slots=True)
class PlanOption:
    tier: str
    interval: Interval
    action: OptionAction
    target: Plan | None  # the plan the account would have (None: sold by sales)
    recurring: Money | None  # billed every interval on `target`
    quote: Quote | None  # for upgrade and downgrade
    reason: str | None  # for unavailable


def plan_options(
    catalog: Catalog,
    account: AccountState,
    billed: tuple[BilledLine, ...],
    now: datetime,
) -> list[PlanOption]:
    """Every tier (by rank) at every interval it is sold in, for this account."""
    current = account.plan
    current_rank = catalog.tiers[current.tier].rank
    options: list[PlanOption] = []
    for key, tier in sorted(catalog.tiers.items(), key=lambda item: item[1].rank):
        if not tier.self_serve:
            action = OptionAction.contact_sales if tier.rank > current_rank else None
            options.extend(
                PlanOption(
                    key,
                    interval,
                    action or OptionAction.unavailable,
                    None,
                    None,
                    None,
                    None if action else f"{tier.name} is sold by the sales team",
                )
                for interval in Interval
            )
            continue
        for interval in (i for i in Interval if i in tier.prices):
            if key == current.tier and interval == current.interval:
                amount = recurring_amount(catalog, current)
                options.append(
                    PlanOption(key, interval, OptionAction.current, current, amount, None, None)
                )
                continue
            target = TargetChange(tier=key, interval=interval).applied_to(catalog, current)
            try:
                quote = quote_for_account(catalog, account, billed, target, now)
            except DomainError as refused:
                options.append(
                    PlanOption(
                        key, interval, OptionAction.unavailable, target, None, None, refused.detail
                    )
                )
                continue
            action = (
                OptionAction.upgrade if quote.timing is Timing.immediate else OptionAction.downgrade
            )
            options.append(
                PlanOption(key, interval, action, target, quote.new_recurring, quote, None)
            )
    return options
