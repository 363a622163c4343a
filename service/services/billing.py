"""The account's subscription as billed: its lines this period, and the provider to change it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from sqlalchemy.orm import Session

from service.adapters.account_reading import StoredLine
from service.adapters.billing_local import LocalBillingGateway
from service.adapters.billing_repository import SubscriptionItem, SubscriptionItemRepository
from service.adapters.billing_tables import SubscriptionItemRow
from service.domain.accounts import AccountStatus, Plan, plan_lines
from service.domain.catalog import Catalog
from service.domain.money import Money
from service.domain.proration import BilledLine
from service.domain.quotes import billed_nothing, current_billed
from service.ports import BillingGateway
from service.services.account_state import AccountState

GatewayFactory = Callable[[Session], BillingGateway]


def local_gateways(declining_accounts: set[str]) -> GatewayFactory:
    """Local (embedded) billing in the session's own transaction; `declining_accounts`' payments
    are declined (tests, the demo)."""
    return lambda session: LocalBillingGateway(session, declining_accounts)


def billed_lines(
    session: Session, catalog: Catalog, account: AccountState
) -> tuple[BilledLine, ...]:
    """What was charged for each line this period; a plan never changed mid-period was billed
    in full at its period start."""
    return billed_of(catalog, account, SubscriptionItemRepository(session).for_account(account.id))


def billed_of(
    catalog: Catalog, account: AccountState, rows: Sequence[SubscriptionItemRow | StoredLine]
) -> tuple[BilledLine, ...]:
    """`billed_lines` of the account's stored subscription lines (`rows`, by key)."""
    period = account.period
    in_full = current_billed(catalog, account.plan, period)
    if account.status is AccountStatus.trialing:
        return billed_nothing(in_full)  # a free trial is invoiced 0 until it ends
    # Stored lines count only while they still describe this period and this plan; a renewal or
    # a change made elsewhere (an admin PUT) means the plan was billed in full.
    stored = {(row.key, row.unit_amount_minor, row.quantity) for row in rows}
    expected = {(line.key, line.unit_amount.minor, line.quantity) for line in in_full}
    if stored != expected or any(row.billed_from < period.start for row in rows):
        return in_full
    return tuple(
        BilledLine(
            row.key,
            row.description,
            Money(row.unit_amount_minor, row.currency),
            row.quantity,
            row.billed_minor,
            row.billed_from,
        )
        for row in rows
    )


def store_billed(
    session: Session, catalog: Catalog, account_id: str, plan: Plan, billed: tuple[BilledLine, ...]
) -> None:
    store_billed_many(session, catalog, {account_id: (plan, billed)})


def store_billed_many(
    session: Session, catalog: Catalog, billed: Mapping[str, tuple[Plan, tuple[BilledLine, ...]]]
) -> None:
    """Replace each account's subscription lines with what its plan now bills (one DELETE and
    one INSERT for all of them)."""
    rows = []
    for account_id, (plan, lines) in billed.items():
        lookup_keys = {line.key: line.lookup_key for line in plan_lines(catalog, plan)}
        rows.extend(
            SubscriptionItem(
                account_id=account_id,
                key=line.key,
                lookup_key=lookup_keys.get(line.key, line.key),
                description=line.description,
                unit_amount_minor=line.unit_amount.minor,
                quantity=line.quantity,
                currency=line.unit_amount.currency,
                billed_minor=line.billed_minor,
                billed_from=line.billed_from,
            )
            for line in lines
        )
    SubscriptionItemRepository(session).replace(list(billed), rows)
