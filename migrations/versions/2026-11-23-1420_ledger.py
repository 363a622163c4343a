"""Ledger: the append-only, hash-chained expansion ledger.

Revision ID: 0002_ledger
Revises: a2234ec1f4f8
Create Date: 2026-11-23 14:20:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_ledger"
down_revision: str | None = "a2234ec1f4f8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# UPDATE and DELETE are refused row by row; TRUNCATE fires no row trigger, so the test suite can
# still empty the table between tests. SQLite gets no trigger: its tests empty tables with DELETE.
_APPEND_ONLY_FUNCTION = """
CREATE FUNCTION ledger_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_entries is append-only: % refused; record a correction instead',
        TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$
"""
_APPEND_ONLY_TRIGGER = """
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only()
"""


def upgrade() -> None:
    op.create_table(
        "ledger_entries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("engine", sa.String(length=16), nullable=True),
        sa.Column("mrr_before_minor", sa.BigInteger(), nullable=False),
        sa.Column("mrr_after_minor", sa.BigInteger(), nullable=False),
        sa.Column("mrr_delta_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("account_id", sa.String(length=128), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("offer_id", sa.String(length=64), nullable=True),
        sa.Column("signal_ids", sa.JSON(), nullable=False),
        sa.Column("motion", sa.String(length=32), nullable=False),
        sa.Column("days_since_activation", sa.Integer(), nullable=True),
        sa.Column("stripe_invoice_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_subscription_id", sa.String(length=255), nullable=True),
        sa.Column("catalog_version", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint(
            "kind IN ('new', 'expansion', 'contraction', 'churn', 'reactivation')",
            name=op.f("ck_ledger_entries_kind"),
        ),
        sa.CheckConstraint(
            "mrr_before_minor >= 0 AND mrr_after_minor >= 0",
            name=op.f("ck_ledger_entries_mrr_not_negative"),
        ),
        sa.CheckConstraint(
            "mrr_delta_minor = mrr_after_minor - mrr_before_minor",
            name=op.f("ck_ledger_entries_delta"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_ledger_entries_idempotency_key")),
    )
    op.create_index(
        "ix_ledger_entries_account_currency_time",
        "ledger_entries",
        ["account_id", "currency", "occurred_at", "id"],
        postgresql_include=[
            "kind",
            "engine",
            "mrr_delta_minor",
            "mrr_before_minor",
            "days_since_activation",
        ],
    )
    op.create_index(op.f("ix_ledger_entries_occurred_at"), "ledger_entries", ["occurred_at"])
    op.create_index(op.f("ix_ledger_entries_offer_id"), "ledger_entries", ["offer_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_APPEND_ONLY_FUNCTION)
        op.execute(_APPEND_ONLY_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_append_only ON ledger_entries")
        op.execute("DROP FUNCTION IF EXISTS ledger_entries_append_only()")
    op.drop_index(op.f("ix_ledger_entries_offer_id"), table_name="ledger_entries")
    op.drop_index(op.f("ix_ledger_entries_occurred_at"), table_name="ledger_entries")
    op.drop_index("ix_ledger_entries_account_currency_time", table_name="ledger_entries")
    op.drop_table("ledger_entries")
