"""Local billing renewals: roll an account into its next period, applying scheduled changes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
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
from service.ports import Clock
from service.services.account_state import account_mrr, changed_accounts, mark_changed, plan_of
from service.services.billing import GatewayFactory, store_billed
from service.services.ledger import ledger_balances, record_movement

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
        and account.status in RENEWING_STATUSES
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
    if after.interval != before.interval or account.status == AccountStatus.trialing:
        # A new interval starts a new cycle at the boundary; so does a trial's end ("a new
        # billing cycle also begins for the customer when the trial ends",
        # docs.stripe.com/billing/subscriptions/trials): the first paid period is a whole one.
        anchor = boundary
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
    paid = gateway.invoice_period(account.id, account.currency, lines, period)
    account.status = AccountStatus.active if paid else AccountStatus.past_due
    session.flush()
    store_billed(session, catalog, account.id, after, current_billed(catalog, after, period))
    # The movement the boundary makes: a scheduled change applied, or a trial's end (MRR from 0
    # to the plan's: `new`, or `reactivation` after an earlier paid period).
    mrr_before = ledger_balances(session, account.id).get(account.currency, 0)
    mrr_after = account_mrr(catalog, account).minor
    if mrr_after != mrr_before:
        record_movement(
            session,
            account_id=account.id,
            currency=account.currency,
            mrr_before=mrr_before,
            mrr_after=mrr_after,
            before=PlanSnapshot(tier=before.tier, seats=before.seats, addons=dict(before.addons)),
            after=PlanSnapshot(tier=after.tier, seats=after.seats, addons=dict(after.addons)),
            source=Source.API,
            idempotency_key=f"renewal:{account.id}:{int(boundary.timestamp())}",
            occurred_at=boundary,
            catalog_version=catalog.version,
        )


# Renewals run on their own: a worker in every replica (RenewalWorker) and `upshift billing run`
# renew every account whose period has ended, without waiting for a request to touch it.
# A trial's end is a renewal like any other: it invoices the first paid period.
RENEWING_STATUSES = (
    AccountStatus.active.value,
    AccountStatus.past_due.value,
    AccountStatus.trialing.value,
)
RENEWAL_BATCH = 200


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
                renewals = 0
                for account in claimed:
                    try:
                        with session.begin_nested():
                            renewals += renew_due(session, catalog, account, now, gateway)
                    except Exception:
                        log.exception("renewal of %s failed; retried next round", account.id)
                        failed.add(account.id)
            batch = RenewalRound(
                accounts=len(claimed) - len(failed & {a.id for a in claimed}),
                renewals=renewals,
                failed=len(failed & {a.id for a in claimed}),
                changed=frozenset(changed_accounts(session)),
            )
        total += batch
        if on_batch is not None:
            on_batch(batch)
        if not claimed:
            return total


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
        catalog: Catalog,
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
        done = renew_due_accounts(self.factory, self.catalog, self.gateways, now)
        self.on_round(done, renewal_lag_seconds(self.factory, self.clock.now()))
        return done

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.run_once()
            except Exception:
                # Nothing is lost: what is due stays due, and the next round tries again.
                log.exception("renewal round failed")
