"""Local billing renewals: due accounts claimed in batches and renewed set-based (the worker in
every replica, and `upshift billing run`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from service.adapters.billing_local import LocalBillingGateway
from service.adapters.billing_repository import (
    InvoiceDraft,
    InvoiceRepository,
    ScheduledChangeRepository,
)
from service.adapters.orm import AccountRow
from service.adapters.repositories import AccountRepository, RenewedAccount
from service.domain.accounts import AccountStatus, Plan, plan_from_json, plan_lines
from service.domain.catalog import Catalog
from service.domain.ledger import Source
from service.domain.periods import Period
from service.domain.proration import BilledLine
from service.domain.quotes import current_billed, plan_mrr
from service.domain.renewals import Scheduled, Term, next_term
from service.ports import Clock
from service.services.account_state import (
    changed_accounts,
    mark_changed,
    plan_of,
    plan_snapshot,
    versions_after,
)
from service.services.billing import GatewayFactory, store_billed_many
from service.services.ledger import MovementRequest, ledger_balances_of, record_movements

log = logging.getLogger("upshift.renewals")

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
            renew_accounts(session, catalog, [account], now, gateway)
        return changed_accounts(session)


def renew_accounts(
    session: Session,
    catalog: Catalog,
    accounts: Sequence[AccountRow],
    now: datetime,
    gateway: LocalBillingGateway,
) -> int:
    """Invoice every period of these (locked) accounts that has started by `now`, applying
    scheduled changes and booking each boundary's MRR movement; returns the periods renewed.

    Set-based: the accounts' scheduled changes and ledger balances are read in one statement
    each, and their rows, invoices, subscription lines and movements written in one or two each,
    so a boundary's thousand renewals cost about what a handful do. The rule itself is the
    domain's (domain.renewals.next_term).
    """
    ids = [account.id for account in accounts]
    waiting = {
        account_id: [
            Scheduled(row.id, row.effective_at, plan_from_json(row.target)) for row in rows
        ]
        for account_id, rows in ScheduledChangeRepository(session).pending_for(ids).items()
    }
    balances = ledger_balances_of(session, ids)
    renewed: list[RenewedAccount] = []
    invoices: list[InvoiceDraft] = []
    movements: list[MovementRequest] = []
    billed: dict[str, tuple[Plan, tuple[BilledLine, ...]]] = {}
    applied: set[str] = set()
    for account in accounts:
        term = Term(
            plan_of(account),
            AccountStatus(account.status),
            account.billing_cycle_anchor or account.current_period_start,
            Period(account.current_period_start, account.current_period_end),
        )
        mrr = balances.get(account.id, {}).get(account.currency, 0)
        credit = account.credit_balance_minor
        count = 0
        while (
            term.period.end <= now
            and term.status in RENEWING_STATUSES
            and count < MAX_RENEWALS_PER_CALL
        ):
            pending = [
                change for change in waiting.get(account.id, ()) if change.change_id not in applied
            ]
            renewal = next_term(term, pending)
            applied.update(renewal.applied)
            after = renewal.term
            invoice = gateway.period_invoice(
                account.id, account.currency, plan_lines(catalog, after.plan), after.period, credit
            )
            credit -= invoice.credit_applied_minor
            invoices.append(invoice)
            status = AccountStatus.active if invoice.paid else AccountStatus.past_due
            billed[account.id] = (after.plan, current_billed(catalog, after.plan, after.period))
            # The movement the boundary makes: a scheduled change applied, or a trial's end
            # (MRR from 0 to the plan's: `new`, or `reactivation` after an earlier paid period).
            mrr_after = plan_mrr(catalog, after.plan).minor
            if mrr_after != mrr:
                movements.append(
                    MovementRequest(
                        account_id=account.id,
                        currency=account.currency,
                        mrr_before=mrr,
                        mrr_after=mrr_after,
                        before=plan_snapshot(term.plan),
                        after=plan_snapshot(after.plan),
                        source=Source.API,
                        idempotency_key=f"renewal:{account.id}:{int(renewal.boundary.timestamp())}",
                        occurred_at=renewal.boundary,
                        catalog_version=after.plan.version or catalog.version,
                        recorded_at=now,
                    )
                )
                mrr = mrr_after
            term = Term(after.plan, status, after.anchor, after.period)
            count += 1
        if count:
            # A scheduled change may move the plan to another catalog version.
            catalog_version, limits_version = versions_after(term.plan, account)
            renewed.append(
                RenewedAccount(
                    id=account.id,
                    tier=term.plan.tier,
                    interval=term.plan.interval.value,
                    seats=term.plan.seats,
                    addons=dict(sorted(term.plan.addons.items())),
                    status=term.status.value,
                    billing_cycle_anchor=term.anchor,
                    current_period_start=term.period.start,
                    current_period_end=term.period.end,
                    credit_balance_minor=credit,
                    updated_at=term.period.start,
                    catalog_version=catalog_version,
                    limits_version=limits_version,
                )
            )
            mark_changed(session, account.id)
    session.flush()  # anything the ORM holds goes first
    AccountRepository(session).renew(renewed)
    ScheduledChangeRepository(session).mark_applied(applied)
    InvoiceRepository(session).add(invoices)
    store_billed_many(session, catalog, billed)
    # Last, so the chain lock is held only from here to the commit.
    record_movements(session, movements)
    return len(invoices)


# Renewals run on their own: a worker in every replica (RenewalWorker) and `upshift billing run`
# renew every account whose period has ended, without waiting for a request to touch it.
# A trial's end is a renewal like any other: it invoices the first paid period.
RENEWING_STATUSES = (
    AccountStatus.active.value,
    AccountStatus.past_due.value,
    AccountStatus.trialing.value,
)
RENEWAL_BATCH = 500


@dataclass(frozen=True, slots=True)
class RenewalRound:
    """What one pass over the due accounts did."""

    accounts: int = 0  # accounts claimed and renewed
    renewals: int = 0  # periods invoiced (an idle account may catch up several)
    failed: int = 0  # accounts whose renewal raised (logged; retried next round)
    changed: frozenset[str] = frozenset()  # for the offer caches

    def __add__(self, other: RenewalRound) -> RenewalRound:
        return RenewalRound(
            self.accounts + other.accounts,
            self.renewals + other.renewals,
            self.failed + other.failed,
            self.changed | other.changed,
        )


def renew_due_accounts(
    factory: sessionmaker[Session],
    catalog: Catalog,
    gateways: GatewayFactory,
    now: datetime,
    *,
    batch_size: int = RENEWAL_BATCH,
    on_batch: Callable[[RenewalRound], None] | None = None,
) -> RenewalRound:
    """Renew every account due at `now` (local billing; with Stripe, renewals arrive as
    webhooks), a batch of accounts per transaction.

    A batch is claimed with FOR UPDATE SKIP LOCKED: replicas running this at once renew
    disjoint accounts, and an account renewed by one is no longer due for the others, so none
    is renewed twice (each renewal's ledger entry also has its own idempotency key). An account
    whose renewal fails is rolled back alone (a savepoint), logged, and left for the next round.
    """
    total = RenewalRound()
    failed: set[str] = set()
    while True:
        with factory() as session:
            with session.begin():
                gateway = gateways(session)
                if not isinstance(gateway, LocalBillingGateway):
                    return total
                claimed = AccountRepository(session).claim_due(
                    now, RENEWING_STATUSES, batch_size, skip=failed
                )
                claimed_ids = {account.id for account in claimed}  # before the commit expires them
                renewals = _renew_batch(session, catalog, claimed, now, gateway, failed)
            batch = RenewalRound(
                accounts=len(claimed_ids - failed),
                renewals=renewals,
                failed=len(claimed_ids & failed),
                changed=frozenset(changed_accounts(session)),
            )
        total += batch
        if on_batch is not None:
            on_batch(batch)
        if not claimed:
            return total


def _renew_batch(
    session: Session,
    catalog: Catalog,
    claimed: Sequence[AccountRow],
    now: datetime,
    gateway: LocalBillingGateway,
    failed: set[str],
) -> int:
    """Renew the claimed accounts together; when that fails, one by one, so an account whose
    renewal raises is rolled back alone (a savepoint), logged, added to `failed` and left for
    the next round while the others renew."""
    try:
        with session.begin_nested():
            return renew_accounts(session, catalog, claimed, now, gateway)
    except Exception:
        if len(claimed) == 1:
            log.exception("renewal of %s failed; retried next round", claimed[0].id)
            failed.add(claimed[0].id)
            return 0
    renewals = 0
    for account in claimed:
        renewals += _renew_batch(session, catalog, [account], now, gateway, failed)
    return renewals


def renewal_lag_seconds(factory: sessionmaker[Session], now: datetime) -> float:
    """How late the oldest due renewal is at `now` (0 when nothing is due)."""
    with factory() as session:
        _count, oldest = AccountRepository(session).due_summary(now, RENEWING_STATUSES)
    return 0.0 if oldest is None else max((now - oldest).total_seconds(), 0.0)


def due_count(factory: sessionmaker[Session], now: datetime) -> int:
    with factory() as session:
        count, _oldest = AccountRepository(session).due_summary(now, RENEWING_STATUSES)
    return count


class RenewalWorker:
    """A background thread that renews due accounts every `poll_s` seconds until stopped; it
    reports each round (what changed, how late the oldest due renewal is) to `on_round`."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        catalog: Callable[[], Catalog],
        gateways: GatewayFactory,
        clock: Clock,
        poll_s: float,
        on_round: Callable[[RenewalRound, float], None],
    ) -> None:
        self.factory = factory
        self.catalog = catalog
        self.gateways = gateways
        self.clock = clock
        self.poll_s = poll_s
        self.on_round = on_round
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="upshift-renewals", daemon=True)

    def start(self) -> RenewalWorker:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def run_once(self) -> RenewalRound:
        now = self.clock.now()
        done = renew_due_accounts(self.factory, self.catalog(), self.gateways, now)
        self.on_round(done, renewal_lag_seconds(self.factory, self.clock.now()))
        return done

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.run_once()
            except Exception:
                # Nothing is lost: what is due stays due, and the next round tries again.
                log.exception("renewal round failed")
