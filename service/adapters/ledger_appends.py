"""The ledger's append side: the chain lock, where accounts stand, and the rows and rollup sums a
batch of movements adds.

Set-based, so a batch of a thousand renewals costs a few statements."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import case, func, select, tuple_
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from service.adapters.bulk_sql import dialect_insert
from service.adapters.ledger_tables import LedgerEntryRow, LedgerMonthFlowRow
from service.domain.ledger import MovementKind, counts_for_cohort

E = LedgerEntryRow
F = LedgerMonthFlowRow

# Any constant works as long as nothing else in the database takes the same advisory lock; this
# is the first 8 bytes of sha256("upshift.ledger.append") as a signed bigint.
APPEND_LOCK_KEY = 0x2F5A_1C3E_9B47_6D01
# The kinds whose deltas move a cohort account's MRR (not new, not reactivation).
COHORT_KINDS = tuple(kind.value for kind in MovementKind if counts_for_cohort(kind))
# Statements bind at most this many accounts at once (SQLite allows 32,766 parameters).
_CHUNK = 2_000

AccountCurrency = tuple[str, str]


@dataclass(frozen=True, slots=True)
class AccountPosition:
    """Where an account stands in the ledger before the next movement is appended."""

    has_entries: bool
    balance: int  # the last mrr_after in the currency asked for, 0 if none
    last_occurred_at: datetime | None  # of the account's last entry in any currency


@dataclass(frozen=True, slots=True)
class PeriodPosition:
    """An account's state in one currency within a period, before its next movement."""

    opening: int | None  # MRR at the period start; None when nothing moved in the period yet
    losses: int  # the losses it booked in the period so far, a magnitude
    net: int  # the sum of its cohort movements in the period so far (domain.ledger.cohort_share)


NO_PERIOD_POSITION = PeriodPosition(opening=None, losses=0, net=0)


@dataclass(frozen=True, slots=True)
class MonthFlow:
    """Entries' contribution to one monthly rollup row (see LedgerMonthFlowRow)."""

    month: int
    currency: str
    kind: str
    engine: str | None
    total: int
    month_cohort: int
    month_capped_loss: int
    quarter_cohort: int
    quarter_capped_loss: int
    entries: int = 1

    @property
    def key(self) -> tuple[int, str, str, str | None]:
        return (self.month, self.currency, self.kind, self.engine)

    def __add__(self, other: MonthFlow) -> MonthFlow:
        assert self.key == other.key
        return MonthFlow(
            *self.key,
            total=self.total + other.total,
            month_cohort=self.month_cohort + other.month_cohort,
            month_capped_loss=self.month_capped_loss + other.month_capped_loss,
            quarter_cohort=self.quarter_cohort + other.quarter_cohort,
            quarter_capped_loss=self.quarter_capped_loss + other.quarter_capped_loss,
            entries=self.entries + other.entries,
        )


_MONTH_FLOW_KEY = ("month", "currency", "kind", "engine")


@cache
def _month_flow_upsert(dialect: Dialect) -> Any:
    """INSERT one rollup row, or add its sums to the row already there (built once)."""
    statement = dialect_insert(dialect, F)
    added = {
        column.name: column + statement.excluded[column.name]
        for column in F.__table__.columns
        if column.name not in _MONTH_FLOW_KEY
    }
    return statement.on_conflict_do_update(index_elements=list(_MONTH_FLOW_KEY), set_=added)


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


class LedgerAppends:
    """Appending to the ledger: there is deliberately no update or delete."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def lock(self) -> None:
        """Serialize appenders until the transaction ends, so all rows form one chain.

        SQLite needs nothing: every transaction already holds the write lock (BEGIN IMMEDIATE).
        """
        if self.session.get_bind().dialect.name == "postgresql":
            self.session.execute(select(func.pg_advisory_xact_lock(APPEND_LOCK_KEY)))

    def head_hash(self) -> str | None:
        return self.session.scalar(select(E.hash).order_by(E.id.desc()).limit(1))

    def by_idempotency_keys(self, keys: Collection[str]) -> dict[str, LedgerEntryRow]:
        found: dict[str, LedgerEntryRow] = {}
        for chunk in _chunks(sorted(keys)):
            for row in self.session.scalars(select(E).where(E.idempotency_key.in_(chunk))):
                found[row.idempotency_key] = row
        return found

    def positions(
        self, pairs: Collection[AccountCurrency]
    ) -> dict[AccountCurrency, AccountPosition]:
        """Each (account, currency)'s position; an account without entries has none."""
        accounts = sorted({account for account, _ in pairs})
        last: dict[str, datetime] = {}
        balances: dict[AccountCurrency, int] = {}
        for chunk in _chunks(accounts):
            for account, occurred_at in self.session.execute(
                select(E.account_id, func.max(E.occurred_at))
                .where(E.account_id.in_(chunk))
                .group_by(E.account_id)
            ):
                last[account] = occurred_at
            ranked = (
                select(
                    E.account_id,
                    E.currency,
                    E.mrr_after_minor,
                    func.row_number()
                    .over(
                        partition_by=(E.account_id, E.currency),
                        order_by=(E.occurred_at.desc(), E.id.desc()),
                    )
                    .label("rank"),
                )
                .where(E.account_id.in_(chunk))
                .subquery()
            )
            for account, currency, balance in self.session.execute(
                select(ranked.c.account_id, ranked.c.currency, ranked.c.mrr_after_minor).where(
                    ranked.c.rank == 1
                )
            ):
                balances[(account, currency)] = balance
        return {
            (account, currency): AccountPosition(
                has_entries=account in last,
                balance=balances.get((account, currency), 0),
                last_occurred_at=last.get(account),
            )
            for account, currency in pairs
        }

    def period_positions(
        self, pairs: Collection[AccountCurrency], since: datetime
    ) -> dict[AccountCurrency, PeriodPosition]:
        """Each (account, currency)'s MRR at `since` (None without movements since) and its
        losses and cohort movements since; pairs without movements since are left out."""
        found: dict[AccountCurrency, PeriodPosition] = {}
        for chunk in _chunks(sorted(pairs)):
            moves = (
                select(
                    E.account_id,
                    E.currency,
                    E.mrr_before_minor,
                    E.mrr_delta_minor,
                    E.kind,
                    func.row_number()
                    .over(partition_by=(E.account_id, E.currency), order_by=(E.occurred_at, E.id))
                    .label("rank"),
                )
                .where(tuple_(E.account_id, E.currency).in_(chunk), E.occurred_at >= since)
                .subquery()
            )
            m = moves.c
            rows = self.session.execute(
                select(
                    m.account_id,
                    m.currency,
                    func.max(case((m.rank == 1, m.mrr_before_minor))),
                    func.sum(case((m.mrr_delta_minor < 0, -m.mrr_delta_minor), else_=0)),
                    func.sum(case((m.kind.in_(COHORT_KINDS), m.mrr_delta_minor), else_=0)),
                ).group_by(m.account_id, m.currency)
            )
            for account, currency, opening, losses, net in rows:
                found[(account, currency)] = PeriodPosition(opening, int(losses), int(net))
        return found

    def add(self, rows: Sequence[LedgerEntryRow]) -> None:
        """Insert the rows in list order (their ids, and so the chain, follow it)."""
        self.session.add_all(rows)
        self.session.flush()

    def add_month_flows(self, flows: Iterable[MonthFlow]) -> None:
        """Add the flows' sums to their months' rollup rows (created when they are the first)."""
        values = [
            {
                "month": flow.month,
                "currency": flow.currency,
                "kind": flow.kind,
                "engine": flow.engine or "",
                "entries": flow.entries,
                "total_minor": flow.total,
                "month_cohort_minor": flow.month_cohort,
                "month_capped_loss_minor": flow.month_capped_loss,
                "quarter_cohort_minor": flow.quarter_cohort,
                "quarter_capped_loss_minor": flow.quarter_capped_loss,
            }
            for flow in flows
        ]
        upsert = _month_flow_upsert(self.session.get_bind().dialect)
        for value in values:  # a few rows: one per month, currency, kind and engine
            self.session.execute(upsert, value)
