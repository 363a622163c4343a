"""Tables of the usage area: events, counters, milestones, crossings and the signal outbox."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from service.adapters.orm import Base


class UsageEventRow(Base):
    """Every counted event, kept so that a replayed event id is recognized (and for audits).

    No foreign key to accounts: ingest checks the accounts in the same transaction, accounts
    are never deleted, and the check would cost a lookup per event on the hottest path.
    """

    __tablename__ = "usage_events"

    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(128))
    feature: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[int] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime]
    period_start: Mapped[datetime]
    received_at: Mapped[datetime]


class UsageCounterRow(Base):
    """Usage per account, feature and period; lifetime counters use the 1970-01-01 period."""

    __tablename__ = "usage_counters"

    account_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("accounts.id"), primary_key=True
    )
    feature: Mapped[str] = mapped_column(String(64), primary_key=True)
    period_start: Mapped[datetime] = mapped_column(primary_key=True)
    period_end: Mapped[datetime | None]
    used: Mapped[int] = mapped_column(BigInteger)
    # The event time of the reading (`set`) the counter holds; an older reading never replaces it.
    reading_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class MilestoneRow(Base):
    """A named milestone an account reached; the first timestamp reported is kept."""

    __tablename__ = "usage_milestones"

    account_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("accounts.id"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    reached_at: Mapped[datetime]
    recorded_at: Mapped[datetime]


class CrossingRow(Base):
    """A threshold crossing (a signal), recorded once per account, threshold and period, with
    what was true when it was recorded: the values, the motion, ACV and readiness."""

    __tablename__ = "signal_crossings"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(128), ForeignKey("accounts.id"))
    threshold_key: Mapped[str] = mapped_column(String(80))  # "sales_request." + a tier key
    feature: Mapped[str] = mapped_column(String(64))
    level: Mapped[str] = mapped_column(String(16))
    at_percent: Mapped[int] = mapped_column(Integer)
    used: Mapped[int] = mapped_column(BigInteger)
    limit_value: Mapped[int] = mapped_column(BigInteger)
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    motion: Mapped[str] = mapped_column(String(16))
    acv_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    readiness_score: Mapped[int] = mapped_column(Integer)
    readiness_reasons: Mapped[list[str]]
    catalog_version: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime]

    # Leads with account_id, so it also serves "the crossings of one account".
    __table_args__ = (UniqueConstraint("account_id", "threshold_key", "period_start"),)


class SignalOutboxRow(Base):
    """A signal waiting to be fanned out to the configured endpoints, written in the same
    transaction as the crossing; the payload is built from the crossing at delivery."""

    __tablename__ = "signal_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    signal_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("signal_crossings.id"), unique=True
    )
    created_at: Mapped[datetime]
    fanned_out_at: Mapped[datetime | None]

    # Only the pending rows are indexed: the ones the deliverer looks for.
    __table_args__ = (
        Index(
            "ix_signal_outbox_pending",
            "id",
            postgresql_where=text("fanned_out_at IS NULL"),
            sqlite_where=text("fanned_out_at IS NULL"),
        ),
    )


class SignalDeliveryRow(Base):
    """One signal for one endpoint: pending while next_attempt_at is set, then delivered."""

    __tablename__ = "signal_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    outbox_id: Mapped[int] = mapped_column(ForeignKey("signal_outbox.id"))
    endpoint: Mapped[str] = mapped_column(String(2048))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime | None] = mapped_column(index=True)
    delivered_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("outbox_id", "endpoint"),)


class SignalDeliveryAttemptRow(Base):
    """The delivery log: every attempt with its outcome (append-only)."""

    __tablename__ = "signal_delivery_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("signal_deliveries.id"))
    attempt: Mapped[int] = mapped_column(Integer)
    attempted_at: Mapped[datetime]
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(500))
    duration_ms: Mapped[int] = mapped_column(Integer)

    __table_args__ = (Index("ix_signal_delivery_attempts_delivery", "delivery_id", "attempt"),)
