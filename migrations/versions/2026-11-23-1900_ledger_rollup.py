"""Ledger rollup: the ledger summed per month, currency, kind and engine, for the NRR report;
and a partial index of post-activation expansions for its days-to-first-expansion median.

Revision ID: 0006_ledger_rollup
Revises: 0005_billing
Create Date: 2026-11-23 19:00:00+00:00

The table is derived from ledger_entries; existing ledgers are rolled up here with the service's
own rebuild (the same statement `upshift ledger rollup --rebuild` runs), so there is one
definition of what a rollup row holds.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from service.adapters.ledger_report_sql import rebuild_month_flows
from service.adapters.ledger_tables import FIRST_EXPANSION_ROWS

revision: str = "0006_ledger_rollup"
down_revision: str | None = "0005_billing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ledger_month_flows",
        sa.Column("month", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("engine", sa.String(length=16), nullable=False),
        sa.Column("entries", sa.BigInteger(), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("month_cohort_minor", sa.BigInteger(), nullable=False),
        sa.Column("month_capped_loss_minor", sa.BigInteger(), nullable=False),
        sa.Column("quarter_cohort_minor", sa.BigInteger(), nullable=False),
        sa.Column("quarter_capped_loss_minor", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "month", "currency", "kind", "engine", name=op.f("pk_ledger_month_flows")
        ),
    )
    rebuild_month_flows(op.get_bind())
    op.create_index(
        "ix_ledger_entries_first_expansion",
        "ledger_entries",
        ["account_id", "occurred_at"],
        postgresql_include=["days_since_activation"],
        postgresql_where=FIRST_EXPANSION_ROWS,
        sqlite_where=FIRST_EXPANSION_ROWS,
    )


def downgrade() -> None:
    op.drop_index("ix_ledger_entries_first_expansion", table_name="ledger_entries")
    op.drop_table("ledger_month_flows")
