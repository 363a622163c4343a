"""Recording MRR movements in the expansion ledger: one, or a batch under one take of the chain
lock, and bringing the ledger to an account's new MRR."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from service.adapters.ledger_appends import (
    NO_PERIOD_POSITION,
    AccountCurrency,
    AccountPosition,
    LedgerAppends,
    MonthFlow,
    PeriodPosition,
)
from service.adapters.ledger_repository import LedgerRepository
from service.adapters.ledger_tables import LedgerEntryRow
from service.domain.errors import Conflict
from service.domain.ledger import (
    GENESIS_HASH,
    Attribution,
    Engine,
    LedgerEntryDraft,
    Motion,
    MovementKind,
    PlanSnapshot,
    Source,
    chain_hash,
    classify,
    cohort_share,
    counts_for_cohort,
    engine_for_change,
    month_and_quarter_start,
    month_index,
)
from service.domain.money import validate_currency

# A recorded ledger entry as the use cases hand it out (read-only to their callers).
LedgerEntry = LedgerEntryRow


class LedgerOutOfStep(Conflict):
    """The movement does not start where the ledger says the account's MRR is."""

    code = "ledger_out_of_step"


class LedgerOutOfOrder(Conflict):
    """The movement is dated before the account's last recorded movement."""

    code = "ledger_out_of_order"


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"


def default_attribution(source: Source, *, strategic: bool) -> Attribution:
    """The motion of a movement whose caller knows no more: admin writes are people's work."""
    if strategic:
        return Attribution(motion=Motion.SALES_ASSISTED)
    if source is Source.ADMIN:
        return Attribution(motion=Motion.CS_ASSISTED)
    return Attribution(motion=Motion.SELF_SERVE)


def _engine(
    kind: MovementKind,
    before: PlanSnapshot | None,
    after: PlanSnapshot | None,
    *,
    strategic: bool,
) -> Engine | None:
    if kind not in (MovementKind.EXPANSION, MovementKind.CONTRACTION):
        return None
    if before is not None and after is not None:
        engine = engine_for_change(before, after, strategic=strategic)
    else:
        engine = Engine.STRATEGIC if strategic else None
    if engine is None and kind is MovementKind.EXPANSION:
        # MRR grew without a tier, seat or add-on change (a price or interval change, or a caller
        # without plan snapshots): no self-serve engine produced it, and reports need an engine.
        return Engine.STRATEGIC
    return engine


@dataclass(frozen=True, slots=True)
class MovementRequest:
    """An MRR movement a writer asks to append (see record_movements)."""

    account_id: str
    currency: str
    mrr_before: int
    mrr_after: int
    before: PlanSnapshot | None
    after: PlanSnapshot | None
    source: Source
    idempotency_key: str
    occurred_at: datetime
    catalog_version: str
    attribution: Attribution | None = None
    strategic: bool = False
    stripe_invoice_id: str | None = None
    stripe_subscription_id: str | None = None
    # When it was recorded (the service's clock); None: the wall clock now.
    recorded_at: datetime | None = None


def record_movement(
    session: Session,
    *,
    account_id: str,
    currency: str,
    mrr_before: int,
    mrr_after: int,
    before: PlanSnapshot | None,
    after: PlanSnapshot | None,
    source: Source,
    idempotency_key: str,
    occurred_at: datetime,
    catalog_version: str,
    attribution: Attribution | None = None,
    strategic: bool = False,
    stripe_invoice_id: str | None = None,
    stripe_subscription_id: str | None = None,
) -> LedgerEntryRow | None:
    """Append one movement inside the caller's transaction (see record_movements)."""
    movement = MovementRequest(
        account_id=account_id,
        currency=currency,
        mrr_before=mrr_before,
        mrr_after=mrr_after,
        before=before,
        after=after,
        source=source,
        idempotency_key=idempotency_key,
        occurred_at=occurred_at,
        catalog_version=catalog_version,
        attribution=attribution,
        strategic=strategic,
        stripe_invoice_id=stripe_invoice_id,
        stripe_subscription_id=stripe_subscription_id,
    )
    return record_movements(session, [movement])[0]


def record_movements(
    session: Session, movements: Sequence[MovementRequest]
) -> list[LedgerEntryRow | None]:
    """Append movements in order inside the caller's transaction (never commits); one result
    per movement.

    A result is None when MRR did not move, and the stored row, not a new one, when the
    idempotency key was already recorded. Each `mrr_before` must be the account's ledger balance
    in its currency (see `ledger_balances`), after the batch's earlier movements of the account,
    and its `occurred_at` must not precede the account's last movement, else LedgerOutOfStep /
    LedgerOutOfOrder (409) and nothing of the batch is written: either would break Σ deltas ==
    MRR or the per-period roll-forward, and the ledger cannot be edited afterwards.

    The whole batch takes the chain lock once and reads where its accounts stand in a few
    statements, so a boundary's thousand renewals cost what a handful of single movements do.
    """
    results: list[LedgerEntryRow | None] = [None] * len(movements)
    moving = [
        (index, movement)
        for index, movement in enumerate(movements)
        if movement.mrr_before != movement.mrr_after
    ]
    if not moving:
        return results
    appends = LedgerAppends(session)
    # Taken before the idempotency lookup too, so a concurrent retry sees the first one's row.
    appends.lock()
    recorded = appends.by_idempotency_keys({movement.idempotency_key for _, movement in moving})
    book = _Book(appends, [movement for _, movement in moving])
    prev_hash = appends.head_hash() or GENESIS_HASH
    rows: list[LedgerEntryRow] = []
    flows: dict[tuple[int, str, str, str | None], MonthFlow] = {}
    for index, movement in moving:
        currency = validate_currency(movement.currency)
        existing = recorded.get(movement.idempotency_key)
        if existing is not None:
            if existing.account_id != movement.account_id or existing.currency != currency:
                raise IdempotencyKeyReused(
                    f"idempotency key '{movement.idempotency_key}' was used for another "
                    "account or currency",
                    field="idempotency_key",
                )
            results[index] = existing
            continue
        draft = book.draft(movement, currency)
        row = _entry_row(draft, movement, prev_hash)
        flow = book.append(draft)
        flows[flow.key] = flows[flow.key] + flow if flow.key in flows else flow
        recorded[draft.idempotency_key] = row
        rows.append(row)
        results[index] = row
        prev_hash = row.hash
    appends.add(rows)
    appends.add_month_flows(flows.values())
    return results


class _Book:
    """Where a batch's accounts stand, read once and moved along as its movements append."""

    def __init__(self, appends: LedgerAppends, movements: Sequence[MovementRequest]) -> None:
        pairs = {(movement.account_id, movement.currency) for movement in movements}
        self.positions = appends.positions(pairs)
        self.periods: dict[datetime, dict[AccountCurrency, PeriodPosition]] = {}
        for since in sorted({s for m in movements for s in month_and_quarter_start(m.occurred_at)}):
            self.periods[since] = appends.period_positions(pairs, since)

    def draft(self, movement: MovementRequest, currency: str) -> LedgerEntryDraft:
        """The movement's entry, checked against where its account stands."""
        account_id = movement.account_id
        position = self.positions[(account_id, currency)]
        if position.balance != movement.mrr_before:
            raise LedgerOutOfStep(
                f"the ledger has account '{account_id}' at {position.balance} {currency} MRR, "
                f"but the movement starts at {movement.mrr_before}; record the missing "
                "movement first",
                field="mrr_before",
            )
        last = position.last_occurred_at
        if last is not None and movement.occurred_at < last:
            raise LedgerOutOfOrder(
                f"account '{account_id}' already has a movement at {last.isoformat()}, "
                f"after {movement.occurred_at.isoformat()}",
                field="occurred_at",
            )
        source = Source(movement.source)
        kind = classify(
            movement.mrr_before, movement.mrr_after, has_paid_before=position.has_entries
        )
        assert kind is not None  # the batch holds moving movements only
        return LedgerEntryDraft(
            idempotency_key=movement.idempotency_key,
            account_id=account_id,
            kind=kind,
            engine=_engine(kind, movement.before, movement.after, strategic=movement.strategic),
            mrr_before=movement.mrr_before,
            mrr_after=movement.mrr_after,
            currency=currency,
            source=source,
            attribution=movement.attribution
            or default_attribution(source, strategic=movement.strategic),
            occurred_at=movement.occurred_at,
            stripe_invoice_id=movement.stripe_invoice_id,
            stripe_subscription_id=movement.stripe_subscription_id,
            catalog_version=movement.catalog_version,
        )

    def append(self, draft: LedgerEntryDraft) -> MonthFlow:
        """Move the account's positions past the draft; returns its share of the rollup."""
        pair = (draft.account_id, draft.currency)
        starts = month_and_quarter_start(draft.occurred_at)  # the same when a quarter starts
        before = {since: self.periods[since].get(pair, NO_PERIOD_POSITION) for since in starts}
        shares = []
        for since in starts:
            period = before[since]
            opening = draft.mrr_before if period.opening is None else period.opening
            shares.append(
                cohort_share(
                    draft.delta,
                    kind=draft.kind,
                    opening=opening,
                    loss_before=period.losses,
                    net_before=period.net,
                )
            )
            self.periods[since][pair] = PeriodPosition(
                opening=opening,
                losses=period.losses + max(-draft.delta, 0),
                net=period.net + (draft.delta if counts_for_cohort(draft.kind) else 0),
            )
        for (account_id, currency), position in list(self.positions.items()):
            if account_id == draft.account_id:
                self.positions[(account_id, currency)] = AccountPosition(
                    has_entries=True,
                    balance=draft.mrr_after if currency == draft.currency else position.balance,
                    last_occurred_at=draft.occurred_at,
                )
        (month_cohort, month_capped), (quarter_cohort, quarter_capped) = shares
        return MonthFlow(
            month=month_index(draft.occurred_at),
            currency=draft.currency,
            kind=draft.kind.value,
            engine=None if draft.engine is None else draft.engine.value,
            total=draft.delta,
            month_cohort=month_cohort,
            month_capped_loss=month_capped,
            quarter_cohort=quarter_cohort,
            quarter_capped_loss=quarter_capped,
        )


def _entry_row(
    draft: LedgerEntryDraft, movement: MovementRequest, prev_hash: str
) -> LedgerEntryRow:
    return LedgerEntryRow(
        kind=draft.kind.value,
        engine=None if draft.engine is None else draft.engine.value,
        mrr_before_minor=draft.mrr_before,
        mrr_after_minor=draft.mrr_after,
        mrr_delta_minor=draft.delta,
        currency=draft.currency,
        account_id=draft.account_id,
        source=draft.source.value,
        offer_id=draft.attribution.offer_id,
        signal_ids=list(draft.attribution.signal_ids),
        motion=draft.attribution.motion.value,
        days_since_activation=draft.attribution.days_since_activation,
        stripe_invoice_id=draft.stripe_invoice_id,
        stripe_subscription_id=draft.stripe_subscription_id,
        catalog_version=draft.catalog_version,
        idempotency_key=draft.idempotency_key,
        occurred_at=draft.occurred_at,
        recorded_at=movement.recorded_at or datetime.now(UTC),
        prev_hash=prev_hash,
        hash=chain_hash(prev_hash, draft),
    )


def ledger_balances(session: Session, account_id: str) -> dict[str, int]:
    """The account's MRR per currency as the ledger has it; currencies at 0 are left out."""
    return LedgerRepository(session).balances([account_id]).get(account_id, {})


def ledger_balances_of(session: Session, account_ids: Collection[str]) -> dict[str, dict[str, int]]:
    """`ledger_balances` of many accounts in one statement; accounts without MRR left out."""
    return LedgerRepository(session).balances(account_ids)


def record_account_state(
    session: Session,
    *,
    account_id: str,
    currency: str,
    mrr_after: int,
    before: PlanSnapshot | None,
    after: PlanSnapshot | None,
    source: Source,
    idempotency_key: str,
    occurred_at: datetime,
    catalog_version: str,
) -> list[LedgerEntryRow]:
    """Bring the ledger to an account's new MRR: one movement, or none when MRR did not move.

    MRR still booked in another currency (the account changed currency) is churned first, under
    `{idempotency_key}:{currency}`, so the ledger's sum per account always equals its MRR.
    """
    LedgerAppends(session).lock()
    balances = ledger_balances(session, account_id)
    targets = {other: 0 for other in balances if other != currency}
    targets[currency] = mrr_after
    recorded: list[LedgerEntryRow] = []
    for move_currency, target in sorted(
        targets.items(), key=lambda item: (item[0] == currency, item[0])
    ):
        is_main = move_currency == currency
        row = record_movement(
            session,
            account_id=account_id,
            currency=move_currency,
            mrr_before=balances.get(move_currency, 0),
            mrr_after=target,
            before=before,
            after=after if is_main else None,
            source=source,
            idempotency_key=idempotency_key if is_main else f"{idempotency_key}:{move_currency}",
            occurred_at=occurred_at,
            catalog_version=catalog_version,
        )
        if row is not None:
            recorded.append(row)
    return recorded
