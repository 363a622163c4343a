"""Repositories: one class per aggregate, the only code that issues SQL for it."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from service.adapters.bulk_sql import BulkSqlRepository
from service.adapters.orm import AccountRow, ApiKeyRow

# What a renewal writes of an account (AccountRepository.renew), in bulk-statement order.
_RENEWED_COLUMNS = (
    ("id", "text"),
    ("tier", "text"),
    ("interval", "text"),
    ("seats", "int"),
    ("addons", "json"),
    ("status", "text"),
    ("billing_cycle_anchor", "time"),
    ("current_period_start", "time"),
    ("current_period_end", "time"),
    ("credit_balance_minor", "int"),
    ("updated_at", "time"),
    ("catalog_version", "text"),
    ("limits_version", "text"),
)


@dataclass(frozen=True, slots=True)
class RenewedAccount:
    """An account's row after renewal (the columns of _RENEWED_COLUMNS)."""

    id: str
    tier: str
    interval: str
    seats: int
    addons: dict[str, int]
    status: str
    billing_cycle_anchor: datetime
    current_period_start: datetime
    current_period_end: datetime
    credit_balance_minor: int
    updated_at: datetime
    catalog_version: str
    limits_version: str


class AccountRepository(BulkSqlRepository):
    def get(self, account_id: str, *, for_update: bool = False) -> AccountRow | None:
        """The account; `for_update` locks its row until the transaction ends and reads it
        again once locked: a copy the session read before may predate a writer it waited for
        (populate_existing refreshes it), and deciding on that copy would, say, renew a
        period twice."""
        statement = select(AccountRow).where(AccountRow.id == account_id)
        if for_update:
            statement = statement.with_for_update().execution_options(populate_existing=True)
        return self.session.scalars(statement).one_or_none()

    def add(self, row: AccountRow) -> None:
        self.session.add(row)
        self.session.flush()

    def on_test_clock(self, clock_id: str) -> list[AccountRow]:
        """The accounts billed by subscriptions on a Stripe test clock, locked and read again
        once locked (as `get` does). Test mode only: a clock holds a few customers."""
        return list(
            self.session.scalars(
                select(AccountRow)
                .where(AccountRow.billing_test_clock_id == clock_id)
                .order_by(AccountRow.id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        )

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

    def get_many(
        self, account_ids: Sequence[str], *, lock: bool = False, skip_locked: bool = False
    ) -> list[AccountRow]:
        """These accounts, by id (those that exist). `lock`: locked for this transaction and
        read again once locked (as `get` does); with `skip_locked`, on PostgreSQL, rows another
        transaction holds are left out (FOR UPDATE SKIP LOCKED) rather than waited for. SQLite
        runs one writer at a time."""
        statement = (
            select(AccountRow)
            .where(self._in_values(AccountRow.id, account_ids))
            .order_by(AccountRow.id)
        )
        if lock:
            statement = statement.with_for_update(skip_locked=skip_locked).execution_options(
                populate_existing=True
            )
        return list(self.session.scalars(statement))

    def renew(self, accounts: Sequence[RenewedAccount]) -> None:
        """Write renewed accounts in one statement (their version goes up, as an ORM update's
        would); the session's copies of them are expired, so they are read again. A catalog
        migration writes the accounts it moves with it too (their plan at the new version)."""
        if not accounts:
            return
        columns = _RENEWED_COLUMNS
        statement = self._statement(
            "renew_accounts",
            lambda: text(
                "UPDATE accounts AS a SET "
                + ", ".join(f"{name} = r.{name}" for name, _ in columns[1:])
                + f", version = a.version + 1 FROM ({self._rows_source(columns)}) AS r "
                "WHERE a.id = r.id"
            ),
        )
        rows = [tuple(getattr(account, name) for name, _ in columns) for account in accounts]
        self._execute(statement, {"rows": self._encode(columns, rows)})
        for account in accounts:
            row = self.session.identity_map.get(self.session.identity_key(AccountRow, account.id))
            if row is not None:
                self.session.expire(row)

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
