"""Local billing renewals: roll an account into its next period, applying scheduled changes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from service.adapters.billing_local import LocalBillingGateway
from service.adapters.billing_repository import ScheduledChangeRepository
from service.adapters.orm import AccountRow
from service.adapters.repositories import AccountRepository
from service.domain.accounts import AccountStatus, plan_from_json, plan_lines
from service.domain.catalog import Catalog
from service.domain.ledger import PlanSnapshot, Source
from service.domain.periods import Period, add_months
from service.domain.quotes import current_billed
from service.services.account_state import changed_accounts, mark_changed
from service.services.accounts import account_mrr, plan_of
from service.services.billing import GatewayFactory, store_billed
from service.services.ledger import ledger_balances, record_movement

# Renewals are bounded per call: an account idle for years catches up over several calls
# rather than holding a transaction open for hundreds of invoices.
MAX_RENEWALS_PER_CALL = 36


def renew_if_due(
    factory: sessionmaker[Session],
    catalog: Catalog,
    gateways: GatewayFactory,
    account_id: str,
    now: datetime,
) -> set[str]:
    """Renew the account into the period holding `now`, in a transaction of its own.

    Local billing only; with Stripe, renewals arrive as webhooks. Its own transaction, because a
    renewal stands whatever the request that noticed it does next (a refused quote rolls back
    its own work, not the invoice of the new period). Returns the accounts it changed.
    """
    with factory() as session:
        with session.begin():
            gateway = gateways(session)
            if not isinstance(gateway, LocalBillingGateway):
                return set()
            accounts = AccountRepository(session)
            account = accounts.get(account_id)
            if account is None or account.current_period_end > now:
                return set()
            account = accounts.get(account_id, for_update=True)
            assert account is not None
            renew_due(session, catalog, account, now, gateway)
        return changed_accounts(session)


def renew_due(
    session: Session,
    catalog: Catalog,
    account: AccountRow,
    now: datetime,
    gateway: LocalBillingGateway,
) -> int:
    """Invoice every period that has started by `now`; returns how many renewals happened."""
    renewed = 0
    while (
        account.current_period_end <= now
        and account.status in (AccountStatus.active, AccountStatus.past_due)
        and renewed < MAX_RENEWALS_PER_CALL
    ):
        _renew_once(session, catalog, account, gateway)
        renewed += 1
    return renewed


def _renew_once(
    session: Session, catalog: Catalog, account: AccountRow, gateway: LocalBillingGateway
) -> None:
    boundary = account.current_period_end
    before = plan_of(account)
    after = before
    for change in ScheduledChangeRepository(session).pending(account.id):
        if change.effective_at <= boundary:
            after = plan_from_json(change.target)
            change.status = "applied"
    anchor = account.billing_cycle_anchor or account.current_period_start
    if after.interval != before.interval:
        anchor = boundary  # a new interval starts a new cycle at the boundary
    months = after.interval.months
    cycles = 1
    while add_months(anchor, cycles * months) <= boundary:
        cycles += 1
    period = Period(boundary, add_months(anchor, cycles * months))

    account.tier = after.tier
    account.interval = after.interval.value
    account.seats = after.seats
    account.addons = dict(sorted(after.addons.items()))
    account.billing_cycle_anchor = anchor
    account.current_period_start = period.start
    account.current_period_end = period.end
    account.updated_at = boundary
    mark_changed(session, account.id)
    lines = plan_lines(catalog, after)
    paid = gateway.invoice_renewal(account.id, account.currency, lines, period)
    account.status = AccountStatus.active if paid else AccountStatus.past_due
    session.flush()
    store_billed(session, catalog, account.id, after, current_billed(catalog, after, period))
    if after != before:
        record_movement(
            session,
            account_id=account.id,
            currency=account.currency,
            mrr_before=ledger_balances(session, account.id).get(account.currency, 0),
            mrr_after=account_mrr(catalog, account).minor,
            before=PlanSnapshot(tier=before.tier, seats=before.seats, addons=dict(before.addons)),
            after=PlanSnapshot(tier=after.tier, seats=after.seats, addons=dict(after.addons)),
            source=Source.API,
            idempotency_key=f"renewal:{account.id}:{int(boundary.timestamp())}",
            occurred_at=boundary,
            catalog_version=catalog.version,
        )
