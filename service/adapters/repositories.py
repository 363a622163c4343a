"""Repositories: one class per aggregate, the only code that issues SQL for it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
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

    def revoke(self, key_id: str, when: datetime) -> bool:
        row = self.session.get(ApiKeyRow, key_id)
        if row is None or row.revoked_at is not None:
            return False
        row.revoked_at = when
        return True
