"""Reads and writes of billing rows: subscription lines, invoices, schedules, upgrades, inbox."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, case, delete, func, or_, select, text, update
from sqlalchemy.orm import Session

from service.adapters.account_reading import StoredLine
from service.adapters.billing_tables import (
    InvoiceLineRow,
    InvoiceRow,
    ScheduledChangeRow,
    SubscriptionItemRow,
    UpgradeRow,
)
from service.adapters.bulk_sql import BulkSqlRepository
from service.domain.periods import Period

# Statements bind at most this many accounts at once (SQLite allows 32,766 parameters).
_CHUNK = 2_000


_ITEM_COLUMNS = (
    ("account_id", "text"),
    ("key", "text"),
    ("lookup_key", "text"),
    ("description", "text"),
    ("unit_amount_minor", "int"),
    ("quantity", "int"),
    ("currency", "text"),
    ("billed_minor", "int"),
    ("billed_from", "time"),
    ("external_id", "text"),
)


@dataclass(frozen=True, slots=True)
class SubscriptionItem:
    """A subscription line as it will be written (the columns of SubscriptionItemRow)."""

    account_id: str
    key: str
    lookup_key: str
    description: str
    unit_amount_minor: int
    quantity: int
    currency: str
    billed_minor: int
    billed_from: datetime
    external_id: str | None = None


class SubscriptionItemRepository(BulkSqlRepository):
    def for_account(self, account_id: str) -> list[SubscriptionItemRow]:
        return list(
            self.session.scalars(
                select(SubscriptionItemRow)
                .where(SubscriptionItemRow.account_id == account_id)
                .order_by(SubscriptionItemRow.key)
            )
        )

    def for_accounts(self, account_ids: Sequence[str]) -> dict[str, list[StoredLine]]:
        """`for_account` of many accounts (accounts without lines left out), read as plain rows
        in one statement per chunk: a catalog migration reads a batch's lines at once."""
        item = SubscriptionItemRow
        found: dict[str, list[StoredLine]] = {}
        for start in range(0, len(account_ids), _CHUNK):
            rows = self._execute(
                select(
                    item.account_id,
                    item.key,
                    item.description,
                    item.unit_amount_minor,
                    item.currency,
                    item.quantity,
                    item.billed_minor,
                    item.billed_from,
                )
                .where(self._in_values(item.account_id, account_ids[start : start + _CHUNK]))
                .order_by(item.account_id, item.key)
            )
            for account_id, *line in rows:
                found.setdefault(account_id, []).append(StoredLine(*line))
        return found

    def replace(self, account_ids: Sequence[str], items: Sequence[SubscriptionItem]) -> None:
        """A subscription's lines are a value: replaced whole after every change (`items` are
        the accounts' new lines); one DELETE and one INSERT however many accounts."""
        self.session.flush()  # ORM changes to these rows go first
        self._execute(
            text(
                f"DELETE FROM subscription_items WHERE account_id IN ({self._values_source('ids')})"
            ),
            {"ids": self._encode_values(account_ids)},
        )
        if items:
            self._bulk(
                "subscription_items",
                "subscription_items",
                _ITEM_COLUMNS,
                "",
                [
                    (
                        item.account_id,
                        item.key,
                        item.lookup_key,
                        item.description,
                        item.unit_amount_minor,
                        item.quantity,
                        item.currency,
                        item.billed_minor,
                        item.billed_from,
                        item.external_id,
                    )
                    for item in items
                ],
            )
        # Rows the session loaded before are gone now.
        replaced = set(account_ids)
        for row in list(self.session.identity_map.values()):
            if isinstance(row, SubscriptionItemRow) and row.account_id in replaced:
                self.session.expunge(row)


@dataclass(frozen=True, slots=True)
class InvoiceLineDraft:
    key: str
    description: str
    quantity: int
    amount_minor: int
    period: Period
    proration: bool


@dataclass(frozen=True, slots=True)
class InvoiceDraft:
    """An invoice of local billing, as it will be written (see InvoiceRepository.add)."""

    id: str
    account_id: str
    billing_reason: str
    status: str
    currency: str
    amount_due_minor: int  # the total (negative: a credit to the customer)
    credit_applied_minor: int  # of the total, what the customer's credit balance paid
    amount_paid_minor: int
    period: Period
    created_at: datetime
    lines: tuple[InvoiceLineDraft, ...]

    @property
    def paid(self) -> bool:
        return self.status == "paid"


_INVOICE_COLUMNS = (
    ("id", "text"),
    ("account_id", "text"),
    ("external_id", "text"),
    ("billing_reason", "text"),
    ("status", "text"),
    ("currency", "text"),
    ("amount_due_minor", "int"),
    ("credit_applied_minor", "int"),
    ("amount_paid_minor", "int"),
    ("period_start", "time"),
    ("period_end", "time"),
    ("created_at", "time"),
)
_INVOICE_LINE_COLUMNS = (
    ("invoice_id", "text"),
    ("key", "text"),
    ("description", "text"),
    ("quantity", "int"),
    ("amount_minor", "int"),
    ("period_start", "time"),
    ("period_end", "time"),
    ("proration", "bool"),
)


class InvoiceRepository(BulkSqlRepository):
    def add(self, invoices: Sequence[InvoiceDraft]) -> None:
        """Write the invoices and their lines: two statements, however many there are."""
        if not invoices:
            return
        self._bulk(
            "invoices",
            "invoices",
            _INVOICE_COLUMNS,
            "",
            [
                (
                    i.id,
                    i.account_id,
                    None,
                    i.billing_reason,
                    i.status,
                    i.currency,
                    i.amount_due_minor,
                    i.credit_applied_minor,
                    i.amount_paid_minor,
                    i.period.start,
                    i.period.end,
                    i.created_at,
                )
                for i in invoices
            ],
        )
        lines = [
            (
                i.id,
                line.key,
                line.description,
                line.quantity,
                line.amount_minor,
                line.period.start,
                line.period.end,
                line.proration,
            )
            for i in invoices
            for line in i.lines
        ]
        if lines:
            self._bulk("invoice_lines", "invoice_lines", _INVOICE_LINE_COLUMNS, "", lines)

    def for_account(self, account_id: str) -> list[InvoiceRow]:
        return list(
            self.session.scalars(
                select(InvoiceRow)
                .where(InvoiceRow.account_id == account_id)
                .order_by(InvoiceRow.created_at, InvoiceRow.id)
            )
        )

    def lines(self, invoice_id: str) -> list[InvoiceLineRow]:
        return list(
            self.session.scalars(
                select(InvoiceLineRow)
                .where(InvoiceLineRow.invoice_id == invoice_id)
                .order_by(InvoiceLineRow.id)
            )
        )


class ScheduledChangeRepository(BulkSqlRepository):
    def pending(self, account_id: str) -> list[ScheduledChangeRow]:
        return list(
            self.session.scalars(
                select(ScheduledChangeRow)
                .where(
                    ScheduledChangeRow.account_id == account_id,
                    ScheduledChangeRow.status == "pending",
                )
                .order_by(ScheduledChangeRow.created_at)
            )
        )

    def pending_for(self, account_ids: Sequence[str]) -> dict[str, list[ScheduledChangeRow]]:
        """Each account's changes still waiting, oldest first; accounts without any left out."""
        found: dict[str, list[ScheduledChangeRow]] = {}
        for start in range(0, len(account_ids), _CHUNK):
            rows = self.session.scalars(
                select(ScheduledChangeRow)
                .where(
                    self._in_values(
                        ScheduledChangeRow.account_id, account_ids[start : start + _CHUNK]
                    ),
                    ScheduledChangeRow.status == "pending",
                )
                .order_by(ScheduledChangeRow.created_at, ScheduledChangeRow.id)
            )
            for row in rows:
                found.setdefault(row.account_id, []).append(row)
        return found

    def add(self, row: ScheduledChangeRow) -> None:
        self.session.add(row)
        self.session.flush()

    def mark_applied(self, change_ids: Collection[str]) -> None:
        """The renewal applied them (one statement for a batch)."""
        if change_ids:
            self._execute(
                text(
                    "UPDATE scheduled_changes SET status = 'applied' "
                    f"WHERE id IN ({self._values_source('ids')})"
                ),
                {"ids": self._encode_values(sorted(change_ids))},
            )

    def cancel_pending(self, account_id: str) -> None:
        """A newer change supersedes anything still waiting for the period end."""
        self.session.execute(
            update(ScheduledChangeRow)
            .where(
                ScheduledChangeRow.account_id == account_id,
                ScheduledChangeRow.status == "pending",
            )
            .values(status="canceled")
        )


class UpgradeRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def by_key(self, account_id: str, idempotency_key: str) -> UpgradeRow | None:
        return self.session.scalars(
            select(UpgradeRow).where(
                UpgradeRow.account_id == account_id,
                UpgradeRow.idempotency_key == idempotency_key,
            )
        ).one_or_none()

    def add(self, row: UpgradeRow) -> None:
        self.session.add(row)
        self.session.flush()

    def get(self, upgrade_id: str) -> UpgradeRow | None:
        return self.session.get(UpgradeRow, upgrade_id)

    def in_flight(self, account_id: str, now: datetime) -> UpgradeRow | None:
        """The upgrade whose claim on the account is still leased, if any."""
        rows = self.session.scalars(
            select(UpgradeRow).where(
                UpgradeRow.account_id == account_id, UpgradeRow.status == "in_flight"
            )
        )
        for row in rows:
            lease = datetime.fromisoformat(str((row.pending or {}).get("lease_until")))
            if lease > now:
                return row
        return None

    def claim(self, row: UpgradeRow) -> None:
        """Claim the account for `row`'s upgrade; a claim of the same request whose lease ran
        out is taken over."""
        existing = self.get(row.id)
        if existing is None:
            self.add(row)
            return
        existing.status, existing.pending = row.status, row.pending
        self.session.flush()

    def release(self, upgrade_id: str) -> None:
        """Drop the claim of an upgrade that failed before the provider changed anything: the
        request may be sent again with its key, as if it had never come."""
        self.session.execute(
            delete(UpgradeRow).where(UpgradeRow.id == upgrade_id, UpgradeRow.status == "in_flight")
        )

    def awaiting_payment(self, account_id: str) -> list[UpgradeRow]:
        """The account's upgrades whose payment waits for the customer, oldest first."""
        return list(
            self.session.scalars(
                select(UpgradeRow)
                .where(
                    UpgradeRow.account_id == account_id,
                    UpgradeRow.status == "requires_action",
                )
                .order_by(UpgradeRow.created_at, UpgradeRow.id)
            )
        )


# A customer's credit balance moves on invoices only: a change whose total is negative grants
# credit, a later invoice applies it. Each such invoice is one row of the credit export.
_granted = case((InvoiceRow.amount_due_minor < 0, -InvoiceRow.amount_due_minor), else_=0)


def credit_batches(
    connection: Connection,
    start: datetime | None,
    end: datetime | None,
    *,
    batch_size: int,
) -> Iterator[Sequence[Row[Any]]]:
    """(invoice id, created_at, account, currency, granted, applied, balance after) of every
    invoice that moved a credit balance, created in [start, end), in time order; the balance
    counts every earlier invoice, also those before `start`."""
    moves = (
        select(
            InvoiceRow.id,
            InvoiceRow.created_at,
            InvoiceRow.account_id,
            InvoiceRow.currency,
            _granted.label("granted"),
            InvoiceRow.credit_applied_minor.label("applied"),
            func.sum(_granted - InvoiceRow.credit_applied_minor)
            .over(
                partition_by=InvoiceRow.account_id,
                order_by=(InvoiceRow.created_at, InvoiceRow.id),
            )
            .label("balance"),
        )
        .where(or_(InvoiceRow.amount_due_minor < 0, InvoiceRow.credit_applied_minor > 0))
        .subquery()
    )
    statement = select(moves).order_by(moves.c.created_at, moves.c.id)
    if start is not None:
        statement = statement.where(moves.c.created_at >= start)
    if end is not None:
        statement = statement.where(moves.c.created_at < end)
    result = connection.execution_options(stream_results=True, yield_per=batch_size).execute(
        statement
    )
    yield from result.partitions()
