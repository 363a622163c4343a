"""The signal outbox's SQL: fan out to endpoints, claim deliveries with a lease, log attempts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from service.adapters.bulk_sql import BulkSqlRepository
from service.adapters.usage_tables import (
    CrossingRow,
    SignalDeliveryAttemptRow,
    SignalDeliveryRow,
    SignalOutboxRow,
)

_OUTBOX_COLUMNS = (("signal_id", "text"), ("created_at", "time"))


class OutboxRepository(BulkSqlRepository):
    """The signal outbox and its deliveries: fan out, claim with a lease, log each attempt."""

    def enqueue(self, rows: Sequence[Sequence[Any]]) -> None:
        """Rows are (signal_id, created_at); SignalRepository.insert_crossings calls this."""
        if rows:
            self._bulk("enqueue", "signal_outbox", _OUTBOX_COLUMNS, "", rows)

    def fan_out(self, endpoints: Sequence[str], now: datetime, limit: int) -> int:
        """Give the signals nobody has fanned out yet one pending delivery per endpoint."""
        statement = (
            select(SignalOutboxRow.id)
            .where(SignalOutboxRow.fanned_out_at.is_(None))
            .order_by(SignalOutboxRow.id)
            .limit(limit)
        )
        if self.locks_rows:
            statement = statement.with_for_update(skip_locked=True)
        outbox_ids = list(self.session.scalars(statement))
        if not outbox_ids:
            return 0
        self.session.execute(
            self._insert(SignalDeliveryRow).on_conflict_do_nothing(),
            [
                {
                    "outbox_id": outbox_id,
                    "endpoint": endpoint,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "delivered_at": None,
                    "last_error": None,
                    "created_at": now,
                }
                for outbox_id in outbox_ids
                for endpoint in endpoints
            ],
        )
        self.session.execute(
            update(SignalOutboxRow)
            .where(SignalOutboxRow.id.in_(outbox_ids))
            .values(fanned_out_at=now)
        )
        return len(outbox_ids)

    def claim_due(
        self, endpoints: Sequence[str], now: datetime, lease_until: datetime, limit: int
    ) -> list[tuple[int, str, int, CrossingRow]]:
        """Lease due deliveries: (delivery id, endpoint, attempt number, the signal).

        The lease moves next_attempt_at forward, so a worker that dies mid-flight leaves the
        delivery due again later: at-least-once, never lost.
        """
        statement = (
            select(
                SignalDeliveryRow.id,
                SignalDeliveryRow.endpoint,
                SignalDeliveryRow.attempts,
                CrossingRow,
            )
            .join(SignalOutboxRow, SignalOutboxRow.id == SignalDeliveryRow.outbox_id)
            .join(CrossingRow, CrossingRow.id == SignalOutboxRow.signal_id)
            .where(SignalDeliveryRow.next_attempt_at <= now)
            .where(SignalDeliveryRow.endpoint.in_(endpoints))
            .order_by(SignalDeliveryRow.next_attempt_at, SignalDeliveryRow.id)
            .limit(limit)
        )
        if self.locks_rows:
            statement = statement.with_for_update(skip_locked=True, of=SignalDeliveryRow)
        claimed = self.session.execute(statement).all()
        if not claimed:
            return []
        self.session.execute(
            update(SignalDeliveryRow)
            .where(SignalDeliveryRow.id.in_([row[0] for row in claimed]))
            .values(next_attempt_at=lease_until, attempts=SignalDeliveryRow.attempts + 1)
        )
        return [(d, e, attempts + 1, crossing) for d, e, attempts, crossing in claimed]

    def record_attempt(
        self,
        delivery_id: int,
        attempt: int,
        *,
        at: datetime,
        status_code: int | None,
        error: str | None,
        duration_ms: int,
        retry_at: datetime | None,
    ) -> None:
        """Log the attempt; delivered when retry_at is None, else due again at retry_at."""
        self.session.add(
            SignalDeliveryAttemptRow(
                delivery_id=delivery_id,
                attempt=attempt,
                attempted_at=at,
                status_code=status_code,
                error=error,
                duration_ms=duration_ms,
            )
        )
        values: dict[str, Any] = (
            {"next_attempt_at": None, "delivered_at": at, "last_error": None}
            if retry_at is None
            else {"next_attempt_at": retry_at, "last_error": error}
        )
        # Only the holder of this attempt's lease may settle it: a late answer from a worker
        # whose lease expired (and was retried) must not overwrite the newer attempt's state.
        self.session.execute(
            update(SignalDeliveryRow)
            .where(SignalDeliveryRow.id == delivery_id)
            .where(SignalDeliveryRow.attempts == attempt)
            .where(SignalDeliveryRow.delivered_at.is_(None))
            .values(**values)
        )
        self.session.flush()

    def pending_count(self) -> int:
        unfanned = self.session.scalar(
            select(func.count())
            .select_from(SignalOutboxRow)
            .where(SignalOutboxRow.fanned_out_at.is_(None))
        )
        undelivered = self.session.scalar(
            select(func.count())
            .select_from(SignalDeliveryRow)
            .where(SignalDeliveryRow.delivered_at.is_(None))
        )
        return (unfanned or 0) + (undelivered or 0)
