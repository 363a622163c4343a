"""The expansion ledger table: one append-only, hash-chained row per MRR movement."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from service.adapters.orm import Base

# BIGINT on PostgreSQL (a bigserial); on SQLite only INTEGER PRIMARY KEY aliases the rowid and so
# auto-increments, hence the variant.
LedgerId = BigInteger().with_variant(Integer(), "sqlite")

# PostgreSQL rejects UPDATE and DELETE on the ledger with this trigger (created by migration
# 0002_ledger); TRUNCATE is a separate event and keeps working for test clean-up.
APPEND_ONLY_TRIGGER = "ledger_entries_append_only"


# The entries that can be an account's first expansion after its activation milestone.
FIRST_EXPANSION_ROWS = text("kind = 'expansion' AND days_since_activation IS NOT NULL")


class LedgerEntryRow(Base):
    """One MRR movement of one account, in one currency; corrections are new rows."""

    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(LedgerId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    engine: Mapped[str | None] = mapped_column(String(16))
    mrr_before_minor: Mapped[int] = mapped_column(BigInteger)
    mrr_after_minor: Mapped[int] = mapped_column(BigInteger)
    mrr_delta_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    account_id: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(32))
    offer_id: Mapped[str | None] = mapped_column(String(64), index=True)
    signal_ids: Mapped[list[str]]
    motion: Mapped[str] = mapped_column(String(32))
    days_since_activation: Mapped[int | None] = mapped_column(Integer)
    stripe_invoice_id: Mapped[str | None] = mapped_column(String(255))
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255))
    catalog_version: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    occurred_at: Mapped[datetime] = mapped_column(index=True)
    recorded_at: Mapped[datetime]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        # An account's history in time order (which is also its ledger order: a movement may
        # not predate the account's last one). Serves balances and, with the INCLUDE columns,
        # lets the NRR report read every account's movements presorted from the index alone.
        Index(
            "ix_ledger_entries_account_currency_time",
            "account_id",
            "currency",
            "occurred_at",
            "id",
            postgresql_include=[
                "kind",
                "engine",
                "mrr_delta_minor",
                "mrr_before_minor",
                "days_since_activation",
            ],
        ),
        # Each account's post-activation expansions in time order, for the report's median days
        # from activation to first expansion (an index-only scan instead of reading every row).
        Index(
            "ix_ledger_entries_first_expansion",
            "account_id",
            "occurred_at",
            postgresql_include=["days_since_activation"],
            postgresql_where=FIRST_EXPANSION_ROWS,
            sqlite_where=FIRST_EXPANSION_ROWS,
        ),
        CheckConstraint("mrr_delta_minor = mrr_after_minor - mrr_before_minor", name="delta"),
        CheckConstraint("mrr_before_minor >= 0 AND mrr_after_minor >= 0", name="mrr_not_negative"),
        CheckConstraint(
            "kind IN ('new', 'expansion', 'contraction', 'churn', 'reactivation')", name="kind"
        ),
    )


class LedgerMonthFlowRow(Base):
    """The ledger summed per UTC calendar month, currency, kind and engine: what the NRR report
    reads for whole months and quarters instead of every entry.

    Derived, not a record of its own: each ledger entry adds itself here in the same transaction
    (services.ledger.record_movement), and `upshift ledger rollup --rebuild` recomputes it from
    the entries (as the migration that created it did). So it is not append-only; the ledger is.
    The cohort columns are the movements of accounts paying at the start of the month (quarter)
    and how much of that opening MRR their losses used up (domain.ledger.cohort_share).
    """

    __tablename__ = "ledger_month_flows"

    month: Mapped[int] = mapped_column(Integer, primary_key=True)  # year * 12 + month - 1
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    # '' for kinds without an engine: a primary key column cannot be NULL.
    engine: Mapped[str] = mapped_column(String(16), primary_key=True)
    entries: Mapped[int] = mapped_column(BigInteger)
    total_minor: Mapped[int] = mapped_column(BigInteger)
    month_cohort_minor: Mapped[int] = mapped_column(BigInteger)
    month_capped_loss_minor: Mapped[int] = mapped_column(BigInteger)
    quarter_cohort_minor: Mapped[int] = mapped_column(BigInteger)
    quarter_capped_loss_minor: Mapped[int] = mapped_column(BigInteger)
