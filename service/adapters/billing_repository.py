"""Reads and writes of billing rows: subscription lines, invoices, schedules, upgrades, inbox."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from service.adapters.billing_tables import (
    InvoiceLineRow,
    InvoiceRow,
    ScheduledChangeRow,
    SubscriptionItemRow,
    UpgradeRow,
)


class SubscriptionItemRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def for_account(self, account_id: str) -> list[SubscriptionItemRow]:
        return list(
            self.session.scalars(
                select(SubscriptionItemRow)
                .where(SubscriptionItemRow.account_id == account_id)
                .order_by(SubscriptionItemRow.key)
            )
        )

    def replace(self, account_id: str, rows: Sequence[SubscriptionItemRow]) -> None:
        """The subscription's lines are a value: replaced whole after every change."""
        self.session.execute(
            delete(SubscriptionItemRow).where(SubscriptionItemRow.account_id == account_id)
        )
        self.session.add_all(rows)
        self.session.flush()


class InvoiceRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, invoice: InvoiceRow, lines: Sequence[InvoiceLineRow]) -> None:
        self.session.add(invoice)
        self.session.flush()
        self.session.add_all(lines)
        self.session.flush()

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


class ScheduledChangeRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

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

    def add(self, row: ScheduledChangeRow) -> None:
        self.session.add(row)
        self.session.flush()

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
