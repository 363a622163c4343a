"""`catalog migrate` as a use case: move accounts to another catalog version's prices (or only its
limits), at once with proration or at the end of their term, a committed batch at a time.

A dry run evaluates every account exactly as an applied run does and writes nothing, so its
numbers are the applied ones. Applied, each batch locks its accounts (FOR UPDATE SKIP LOCKED on
PostgreSQL), decides again on the locked rows and commits the moves, their invoices, subscription
lines and ledger movements together: a run that stops part way is resumed by running it again,
and an account on the target version (or already scheduled to it) is never moved twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from service.adapters.account_plans import account_versions
from service.adapters.account_reading import StoredLine
from service.adapters.billing_local import LocalBillingGateway, credit_owed
from service.adapters.billing_repository import (
    InvoiceDraft,
    InvoiceRepository,
    ScheduledChangeRepository,
    SubscriptionItemRepository,
)
from service.adapters.billing_tables import ScheduledChangeRow
from service.adapters.orm import AccountRow
from service.adapters.repositories import AccountRepository, RenewedAccount
from service.domain.accounts import Plan, pays, plan_from_json, plan_lines, plan_to_json
from service.domain.catalog import CatalogHistory, Interval, Timing, UnknownCatalogVersion
from service.domain.catalog_diff import PlanProblem, PricedPlan, price_plan, problems_under
from service.domain.catalog_migration import (
    AccountMove,
    MigrationReport,
    MigrationRequest,
    Outcome,
)
from service.domain.errors import DomainError
from service.domain.ledger import Source
from service.domain.money import Money
from service.domain.proration import BilledLine
from service.domain.quotes import PlanKey, Quote, plan_key
from service.services.account_state import (
    account_mrr,
    mark_changed,
    plan_of,
    plan_snapshot,
    state_of,
    versions_after,
)
from service.services.billing import billed_of, store_billed_many
from service.services.ledger import MovementRequest, ledger_balances_of, record_movements
from service.services.quotes import TargetChange, prepare_for_account, price_for_account
from service.services.upgrades import UpgradeOutcome

BATCH_SIZE = 1_000
# What a limits rollout cannot do: limits come from the tier and its add-ons, so a version
# without the account's tier or one of its add-ons has no limits for it.
_LIMITS_PROBLEMS = frozenset({"unknown_tier", "unknown_addon", "addon_not_allowed"})


@dataclass(frozen=True, slots=True)
class _Decision:
    move: AccountMove
    quote: Quote | None = None
    invoice: InvoiceDraft | None = None
    billed: tuple[BilledLine, ...] = ()


def _problem(code: str, problem: str, outcome: str = "not moved") -> PlanProblem:
    return PlanProblem(code, problem, outcome)


# How an account billed by a remote provider (Stripe) moves: the upgrade use case
# (services.upgrades.execute_upgrade: the account claimed, the provider called with no lock
# held, then the change booked), given the account, the change and its idempotency key.
ProviderMove = Callable[[str, TargetChange, str], UpgradeOutcome]


class _Migration:
    """Decides what happens to each account; the same for a dry run and an applied run."""

    def __init__(
        self,
        history: CatalogHistory,
        request: MigrationRequest,
        now: datetime,
        *,
        billing_backend: str,
    ) -> None:
        self.history = history
        self.request = request
        self.target = history.version(request.to_version)  # UnknownCatalogVersion if not loaded
        self.now = now
        self.local = billing_backend == "local"
        self._priced: dict[tuple[object, ...], PricedPlan | PlanProblem] = {}
        self._same_lines: dict[tuple[PlanKey, PlanKey], bool] = {}

    def from_version(self, row: AccountRow) -> str:
        return row.limits_version if self.request.limits_only else row.catalog_version

    def decide(
        self,
        row: AccountRow,
        lines: Sequence[StoredLine],
        pending: Sequence[ScheduledChangeRow],
        gateway: LocalBillingGateway,
        *,
        applying: bool,
    ) -> _Decision:
        version = self.from_version(row)
        plan = Plan(row.tier, Interval(row.interval), row.seats, dict(row.addons))
        zero = Money.zero(row.currency)

        def outcome(kind: Outcome, *problems: PlanProblem, before: Money = zero) -> _Decision:
            shown = plan.at_version(version) if kind is Outcome.NOT_MOVED else None
            return _Decision(
                AccountMove(row.id, row.tier, version, kind, before, before, zero, shown, problems)
            )

        if version == self.target.version:
            return outcome(Outcome.ALREADY)
        if row.status == "canceled":
            return outcome(Outcome.NOT_MOVED, _problem("canceled", "account canceled"))
        if self.request.limits_only:
            return self._limits(row, plan, version, outcome)
        if any(plan_from_json(p.target).version == self.target.version for p in pending):
            return outcome(Outcome.ALREADY)  # scheduled by an earlier run
        priced = self._price(plan, version, pays(row.status))
        if isinstance(priced, PlanProblem):
            return outcome(Outcome.NOT_MOVED, priced)
        if not priced.moves:
            return outcome(Outcome.NOT_MOVED, *priced.problems, before=priced.mrr_before)
        before = priced.mrr_before
        if not self.target.tiers[plan.tier].self_serve:
            return outcome(
                Outcome.NOT_MOVED,
                _problem(
                    "sales_assisted",
                    "sales-assisted tier: no list price to move to",
                    "not moved: its contract is changed by sales (--limits-only moves limits)",
                ),
                before=before,
            )
        if applying and not self.local:  # no way to move it through the provider was given
            billed_by = "billed by Stripe" if row.billing_subscription_id else "billing is Stripe"
            return outcome(
                Outcome.NOT_MOVED,
                _problem(
                    "billed_by_stripe",
                    f"{billed_by} (UPSHIFT_BILLING_BACKEND=stripe)",
                    "not moved: this command moves locally billed accounts; a Stripe "
                    "subscription moves to a new version through Stripe",
                ),
                before=before,
            )
        if pending:
            return outcome(
                Outcome.NOT_MOVED,
                _problem(
                    "change_scheduled",
                    f"a change is scheduled for {pending[-1].effective_at:%Y-%m-%d}",
                    "not moved: run the migration again once it has applied",
                ),
                before=before,
            )
        state = state_of(row)
        target = plan.at_version(self.target.version)
        try:
            prepared = prepare_for_account(self.target, state, target)
            # The operator chooses when (a price rise at once is prorated like any upgrade).
            prepared = replace(prepared, timing=self.request.when)
            billed = (
                billed_of(self.target, state, lines)
                if self.request.when is Timing.immediate
                else ()
            )
            quote = price_for_account(prepared, state, billed, self.now)
            invoice = None
            if quote.timing is Timing.immediate:
                invoice, applied = gateway.change_invoice(
                    state.billing, quote, f"upshift:catalog-migration:{self.move_key(row)}"
                )
                billed = applied.billed
        except DomainError as exc:
            return outcome(Outcome.NOT_MOVED, _problem(exc.code, exc.detail), before=before)
        immediate = quote.timing is Timing.immediate
        move = AccountMove(
            row.id,
            row.tier,
            version,
            Outcome.MOVED if immediate else Outcome.SCHEDULED,
            before,
            priced.mrr_after,
            quote.amount_due if immediate else zero,
        )
        return _Decision(move, quote, invoice, billed)

    def _limits(
        self,
        row: AccountRow,
        plan: Plan,
        version: str,
        outcome: Callable[..., _Decision],
    ) -> _Decision:
        mrr = account_mrr(self.target, row)
        try:
            current = self.history.version(version)
        except UnknownCatalogVersion as exc:
            return outcome(Outcome.NOT_MOVED, _problem("unknown_version", str(exc)), before=mrr)
        problems = [
            replace(p, outcome="limits not moved: the account keeps its current limits")
            for p in problems_under(current, self.target, plan)
            if p.code in _LIMITS_PROBLEMS
        ]
        if problems:
            return outcome(Outcome.NOT_MOVED, *problems, before=mrr)
        return outcome(Outcome.MOVED, before=mrr)

    def _price(self, plan: Plan, version: str, paying: bool) -> PricedPlan | PlanProblem:
        """The catalog diff's pricing of the plan from its version to the target (per plan)."""
        key = (plan.tier, plan.interval, plan.seats, tuple(sorted(plan.addons.items())))
        key += (version, paying)
        found = self._priced.get(key)
        if found is None:
            try:
                found = price_plan(self.history.version(version), self.target, plan, paying=paying)
            except UnknownCatalogVersion as exc:
                found = _problem("unknown_version", str(exc))
            self._priced[key] = found
        return found

    def same_lines(self, current: Plan, target: Plan) -> bool:
        """Whether the plan bills the same lines (key, lookup key, amount, quantity) at its own
        version and at the target: then its subscription lines need no rewrite."""
        key = (plan_key(current), plan_key(target))
        same = self._same_lines.get(key)
        if same is None:
            same = self._same_lines[key] = plan_lines(self.target, current) == plan_lines(
                self.target, target
            )
        return same

    def move_key(self, row: AccountRow) -> str:
        """Per (account, target version), and the row version it moved from: a later return to
        an older version (a tier change, a rollback) may be migrated again."""
        return f"{row.id}:{self.target.version}:{row.version}"


@dataclass(slots=True)
class _Writes:
    """A batch's moves, written together once every account of it is decided."""

    accounts: list[RenewedAccount] = field(default_factory=list)
    invoices: list[InvoiceDraft] = field(default_factory=list)
    billed: dict[str, tuple[Plan, tuple[BilledLine, ...]]] = field(default_factory=dict)
    schedules: list[ScheduledChangeRow] = field(default_factory=list)
    movements: list[MovementRequest] = field(default_factory=list)


def migrate_accounts(
    factory: sessionmaker[Session],
    history: CatalogHistory,
    request: MigrationRequest,
    now: datetime,
    *,
    apply: bool,
    billing_backend: str = "local",
    declining_accounts: Collection[str] = (),
    batch_size: int = BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
    scope: MigrationScope | None = None,
    provider_move: ProviderMove | None = None,
) -> MigrationReport:
    """Evaluate (and with `apply`, move) every live account in the request's scope.

    With a remote billing provider (`billing_backend` "stripe"), `provider_move` moves each
    account through its subscription, as an upgrade to the same plan at the target version
    (with Stripe's proration, or a schedule at the period end): the batch is decided without
    locks, and each account is then moved in its own transactions, never holding a lock over a
    call to Stripe. Without it, such accounts are listed as not moved.

    Raises UnknownCatalogVersion when the target is not loaded. `scope`: the accounts, when
    the caller read them already (`migration_scope`); `on_batch` is told how many accounts each
    batch looked at (a progress bar). Applied, every batch is its own transaction:
    the accounts are locked, skipping those another transaction holds, which are taken again
    at the end, waiting for their lock (a customer's upgrade, or a second run, finishing).
    """
    migration = _Migration(history, request, now, billing_backend=billing_backend)
    report = MigrationReport(migration.target, request, applied=apply)
    scope = scope or migration_scope(factory, request)
    ids = scope.account_ids
    for account_id in scope.missing:
        report.add(
            AccountMove(
                account_id,
                "-",
                "-",
                Outcome.NOT_MOVED,
                Money.zero(migration.target.currency),
                Money.zero(migration.target.currency),
                Money.zero(migration.target.currency),
                problems=(_problem("unknown_account", "no live account has this id"),),
            )
        )
    report.considered = len(ids)
    declining = frozenset(declining_accounts)
    busy: list[str] = []
    remote = apply and not migration.local and not request.limits_only
    for start in range(0, len(ids), batch_size):
        batch = ids[start : start + batch_size]
        if remote and provider_move is not None:
            _provider_batch(factory, migration, report, batch, provider_move)
        else:
            busy += _batch(factory, migration, report, batch, declining, apply, skip_locked=True)
        if on_batch is not None:
            on_batch(len(batch))
    for start in range(0, len(busy), batch_size):
        _batch(factory, migration, report, busy[start : start + batch_size], declining, apply)
    report.not_moved.sort(key=lambda move: move.account_id)
    return report


@dataclass(frozen=True, slots=True)
class MigrationScope:
    """The live accounts a migration looks at, by id (those already on the target included:
    they count as already on it), and the ids of the accounts file that name no live account."""

    account_ids: list[str]
    missing: list[str]


def migration_scope(factory: sessionmaker[Session], request: MigrationRequest) -> MigrationScope:
    wanted = request.account_ids
    with factory() as session:
        found = [
            account_id
            for account_id, _catalog, _limits in account_versions(
                session.connection(), tier=request.tier
            )
            if wanted is None or account_id in wanted
        ]
    missing = sorted(wanted - set(found)) if wanted is not None else []
    if request.tier is not None and missing:
        # Named in the file but on another tier: out of scope, not unknown.
        with factory() as session:
            live = {i for i, _c, _l in account_versions(session.connection())}
        missing = [account_id for account_id in missing if account_id not in live]
    return MigrationScope(found, missing)


def _batch(
    factory: sessionmaker[Session],
    migration: _Migration,
    report: MigrationReport,
    ids: list[str],
    declining: frozenset[str],
    apply: bool,
    *,
    skip_locked: bool = False,
) -> list[str]:
    """Decide (and apply) one batch in one transaction; returns the ids skipped because
    another transaction held them."""
    # A dry run reads in a transaction it never commits.
    with factory() as session, session.begin() if apply else nullcontext():
        rows = AccountRepository(session).get_many(ids, lock=apply, skip_locked=skip_locked)
        got = {row.id for row in rows}
        busy = [i for i in ids if i not in got] if apply and skip_locked else []
        price_move = not migration.request.limits_only
        immediate = migration.request.when is Timing.immediate
        row_ids = [row.id for row in rows]
        lines = (
            SubscriptionItemRepository(session).for_accounts(row_ids)
            if price_move and immediate
            else {}
        )
        pending = ScheduledChangeRepository(session).pending_for(row_ids) if price_move else {}
        gateway = LocalBillingGateway(session, declining)
        decisions = [
            (
                row,
                migration.decide(
                    row,
                    lines.get(row.id, ()),
                    pending.get(row.id, ()),
                    gateway,
                    applying=apply,
                ),
            )
            for row in rows
        ]
        if apply:
            report.ledger_entries += _write(session, migration, decisions)
    for _row, decision in decisions:
        report.add(decision.move)
        if (
            not apply
            and not migration.local
            and not migration.request.limits_only
            and decision.move.outcome in (Outcome.MOVED, Outcome.SCHEDULED)
        ):
            report.stripe_billed += 1
    return busy


def _provider_batch(
    factory: sessionmaker[Session],
    migration: _Migration,
    report: MigrationReport,
    ids: list[str],
    provider_move: ProviderMove,
) -> None:
    """Decide a batch as a dry run does (no locks), then move each account that moves through
    the provider; the upgrade use case locks, re-quotes and books it (one ledger movement, the
    engine price_uplift), and refuses what changed meanwhile."""
    with factory() as session:
        rows = AccountRepository(session).get_many(ids, lock=False)
        pending = ScheduledChangeRepository(session).pending_for([row.id for row in rows])
        gateway = LocalBillingGateway(session, frozenset())
        decisions = [
            (row, migration.decide(row, (), pending.get(row.id, ()), gateway, applying=False))
            for row in rows
        ]
    at_term_end = migration.request.when is Timing.end_of_term
    for row, decision in decisions:
        move = decision.move
        if move.outcome in (Outcome.MOVED, Outcome.SCHEDULED):
            change = TargetChange(version=migration.target.version, at_term_end=at_term_end)
            outcome = provider_move(row.id, change, f"catalog-migrate:{migration.move_key(row)}")
            if outcome.status_code == 200:
                report.ledger_entries += outcome.body.get("ledger_entry_id") is not None
            else:
                move = replace(
                    move,
                    outcome=Outcome.NOT_MOVED,
                    mrr_after=move.mrr_before,
                    amount_due=Money.zero(move.amount_due.currency),
                    plan=plan_of(row),  # at its own version: a price move starts there
                    problems=(_provider_problem(outcome),),
                )
        report.add(move)


def _provider_problem(outcome: UpgradeOutcome) -> PlanProblem:
    body = outcome.body
    detail = str(body.get("detail") or body.get("title") or f"HTTP {outcome.status_code}")
    return _problem(
        str(body.get("code") or "provider_refused"),
        detail,
        "not moved: the provider refused the change; run the migration again",
    )


def _write(
    session: Session,
    migration: _Migration,
    decisions: list[tuple[AccountRow, _Decision]],
) -> int:
    """Write a batch's decided moves; returns the ledger entries written."""
    writes = _Writes()
    # The ledger's balance of the accounts whose MRR moves (the others book no movement).
    balances = ledger_balances_of(
        session,
        [row.id for row, d in decisions if d.quote and d.move.mrr_after != d.move.mrr_before],
    )
    for row, decision in decisions:
        move = decision.move
        if move.outcome is Outcome.MOVED and decision.quote is None:  # limits only
            writes.accounts.append(_limits_moved(row, migration))
        elif move.outcome is Outcome.MOVED:
            _immediate(writes, migration, row, decision, balances.get(row.id))
        elif move.outcome is Outcome.SCHEDULED:
            assert decision.quote is not None
            writes.schedules.append(
                ScheduledChangeRow(
                    # Per move and run: a move a customer's change replaced is scheduled anew.
                    id="mig_"
                    + hashlib.sha256(
                        f"{migration.move_key(row)}:{migration.now.isoformat()}".encode()
                    ).hexdigest()[:24],
                    account_id=row.id,
                    target=plan_to_json(decision.quote.target),
                    effective_at=decision.quote.effective_at,
                    status="pending",
                    external_id=None,
                    created_at=migration.now,
                )
            )
        else:
            continue
        mark_changed(session, row.id)
    session.flush()
    AccountRepository(session).renew(writes.accounts)
    InvoiceRepository(session).add(writes.invoices)
    if writes.billed:
        store_billed_many(session, migration.target, writes.billed)
    if writes.schedules:
        session.add_all(writes.schedules)
        session.flush()
    # Last, so the ledger's chain lock is held only from here to the commit.
    entries = record_movements(session, writes.movements)
    return sum(1 for entry in entries if entry is not None)


def _immediate(
    writes: _Writes,
    migration: _Migration,
    row: AccountRow,
    decision: _Decision,
    balances: dict[str, int] | None,
) -> None:
    """An immediate move: the plan at the target version, its prorated invoice (or credit),
    its subscription lines, and its one ledger movement."""
    quote = decision.quote
    assert quote is not None
    target = quote.target
    invoice_id = None
    if decision.invoice is not None and decision.invoice.lines:
        writes.invoices.append(decision.invoice)  # nothing to invoice when no line changed
        invoice_id = decision.invoice.id
    catalog_version, limits_version = versions_after(target, row)
    writes.accounts.append(
        RenewedAccount(
            id=row.id,
            tier=target.tier,
            interval=target.interval.value,
            seats=target.seats,
            addons=dict(sorted(target.addons.items())),
            status=row.status,
            billing_cycle_anchor=row.billing_cycle_anchor or row.current_period_start,
            current_period_start=quote.period.start,
            current_period_end=quote.period.end,
            credit_balance_minor=row.credit_balance_minor + credit_owed(quote),
            updated_at=migration.now,
            catalog_version=catalog_version,
            limits_version=limits_version,
        )
    )
    if not migration.same_lines(quote.current, target):
        # Lines that bill the same prices under the same Stripe lookup keys stay as stored.
        writes.billed[row.id] = (target, decision.billed)
    writes.movements.append(
        MovementRequest(
            account_id=row.id,
            currency=row.currency,
            # From the ledger's own balance, as an upgrade books it (read only where MRR
            # moves: where it does not, no movement is booked).
            mrr_before=(
                decision.move.mrr_before.minor
                if balances is None and decision.move.mrr_after == decision.move.mrr_before
                else (balances or {}).get(row.currency, 0)
            ),
            mrr_after=decision.move.mrr_after.minor,
            before=plan_snapshot(quote.current),
            after=plan_snapshot(target),
            source=Source.ADMIN,
            idempotency_key=f"catalog_migration:{migration.move_key(row)}",
            occurred_at=migration.now,
            catalog_version=migration.target.version,
            stripe_invoice_id=invoice_id,
            recorded_at=migration.now,
        )
    )


def _limits_moved(row: AccountRow, migration: _Migration) -> RenewedAccount:
    """The row as it is, but for its limits version (a limits rollout)."""
    return RenewedAccount(
        id=row.id,
        tier=row.tier,
        interval=row.interval,
        seats=row.seats,
        addons=dict(sorted(row.addons.items())),
        status=row.status,
        billing_cycle_anchor=row.billing_cycle_anchor or row.current_period_start,
        current_period_start=row.current_period_start,
        current_period_end=row.current_period_end,
        credit_balance_minor=row.credit_balance_minor,
        updated_at=migration.now,
        catalog_version=row.catalog_version,
        limits_version=migration.target.version,
    )
