"""The ledger's reads: entries page by page, the time window filter, and the chain in batches for
verify."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, func, select
from sqlalchemy.orm import Session

from service.adapters.ledger_tables import LedgerEntryRow

E = LedgerEntryRow

# The ledger columns the hash covers, in the order verify reads them, keyed by record field.
CHAIN_COLUMNS: dict[str, Any] = {
    "idempotency_key": E.idempotency_key,
    "account_id": E.account_id,
    "kind": E.kind,
    "engine": E.engine,
    "mrr_before": E.mrr_before_minor,
    "mrr_after": E.mrr_after_minor,
    "delta": E.mrr_delta_minor,
    "currency": E.currency,
    "source": E.source,
    "offer_id": E.offer_id,
    "signal_ids": E.signal_ids,
    "motion": E.motion,
    "days_since_activation": E.days_since_activation,
    "occurred_at": E.occurred_at,
    "stripe_invoice_id": E.stripe_invoice_id,
    "stripe_subscription_id": E.stripe_subscription_id,
    "catalog_version": E.catalog_version,
}


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """A half-open [start, end) filter on occurred_at; either side may be open."""

    start: datetime | None = None
    end: datetime | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if self.start is not None:
            found.append(E.occurred_at >= self.start)
        if self.end is not None:
            found.append(E.occurred_at < self.end)
        return found


class LedgerRepository:
    """Reading entries (appends: ledger_appends.LedgerAppends)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def balances(self, account_ids: Collection[str]) -> dict[str, dict[str, int]]:
        """Each account's MRR per currency as the ledger has it (sum of deltas), zeros dropped;
        accounts without MRR are left out."""
        found: dict[str, dict[str, int]] = {}
        ids = sorted(account_ids)
        for start in range(0, len(ids), 2_000):  # SQLite binds at most 32,766 parameters
            rows = self.session.execute(
                select(E.account_id, E.currency, func.sum(E.mrr_delta_minor))
                .where(E.account_id.in_(ids[start : start + 2_000]))
                .group_by(E.account_id, E.currency)
            )
            for account_id, currency, total in rows:
                if total:
                    found.setdefault(account_id, {})[currency] = int(total)
        return found

    def page(
        self,
        conditions: Sequence[ColumnElement[bool]],
        *,
        after_id: int | None,
        limit: int,
    ) -> list[LedgerEntryRow]:
        """Up to `limit` entries in ledger order after `after_id` (keyset pagination)."""
        statement = select(E).where(*conditions)
        if after_id is not None:
            statement = statement.where(E.id > after_id)
        return list(self.session.scalars(statement.order_by(E.id).limit(limit)))


def chain_batches(
    connection: Connection, *, after_id: int, batch_size: int
) -> Iterator[Sequence[Row]]:
    """Every row's id, hashed fields, prev_hash and hash in ledger order, in keyset batches."""
    columns = [E.id, *CHAIN_COLUMNS.values(), E.prev_hash, E.hash]
    while True:
        rows = connection.execute(
            select(*columns).where(E.id > after_id).order_by(E.id).limit(batch_size)
        ).all()
        if rows:
            yield rows
        if len(rows) < batch_size:
            return
        after_id = rows[-1].id
