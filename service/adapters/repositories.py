"""Repositories: one class per aggregate, the only code that issues SQL for it."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.adapters.orm import AccountRow, ApiKeyRow


class AccountRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, account_id: str, *, for_update: bool = False) -> AccountRow | None:
        statement = select(AccountRow).where(AccountRow.id == account_id)
        if for_update:
            statement = statement.with_for_update()
        return self.session.scalars(statement).one_or_none()

    def add(self, row: AccountRow) -> None:
        self.session.add(row)
        self.session.flush()

    def claim_due(
        self, now: datetime, statuses: Collection[str], limit: int, skip: Collection[str] = ()
    ) -> list[AccountRow]:
        """Up to `limit` accounts in `statuses` whose period ended by `now`, oldest boundary
        first, locked for this transaction. On PostgreSQL rows another transaction holds are
        skipped (FOR UPDATE SKIP LOCKED), so several workers claim disjoint batches; SQLite
        runs one writer at a time."""
        statement = (
            select(AccountRow)
            .where(AccountRow.current_period_end <= now, AccountRow.status.in_(statuses))
            .order_by(AccountRow.current_period_end, AccountRow.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        if skip:
            statement = statement.where(AccountRow.id.not_in(skip))
        return list(self.session.scalars(statement))

    def due_summary(self, now: datetime, statuses: Collection[str]) -> tuple[int, datetime | None]:
        """How many accounts in `statuses` are due at `now`, and the oldest boundary among them."""
        count, oldest = self.session.execute(
            select(func.count(), func.min(AccountRow.current_period_end)).where(
                AccountRow.current_period_end <= now, AccountRow.status.in_(statuses)
            )
        ).one()
        return count, oldest


class ApiKeyRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def by_hash(self, key_hash: str) -> ApiKeyRow | None:
        return self.session.scalars(
            select(ApiKeyRow).where(ApiKeyRow.key_hash == key_hash, ApiKeyRow.revoked_at.is_(None))
        ).one_or_none()

    def add(self, row: ApiKeyRow) -> None:
        self.session.add(row)
        self.session.flush()

    def all(self) -> list[ApiKeyRow]:
        return list(self.session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at)))

    def revoke(self, key_id: str, when: datetime) -> bool:
        row = self.session.get(ApiKeyRow, key_id)
        if row is None or row.revoked_at is not None:
            return False
        row.revoked_at = when
        return True
