"""The monthly rollup caps each cohort account's net loss at its opening MRR (NRR >= 0).

A data migration: the rollup's cohort sums are rebuilt from the entries with the rule now in
`domain.ledger.cohort_share` (the same statement `upshift ledger rollup --rebuild` runs). Only
ledgers where an account lost more than its opening MRR within one month or quarter (churned,
came back and churned again) change. No schema change.

Revision ID: 0010_rollup_loss_cap
Revises: 0009_sales_request_keys
Create Date: 2026-12-03 18:30:00+00:00
"""

from collections.abc import Sequence

from alembic import op

from service.adapters.ledger_report_sql import rebuild_month_flows

revision: str = "0010_rollup_loss_cap"
down_revision: str | None = "0009_sales_request_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    rebuild_month_flows(op.get_bind())


def downgrade() -> None:
    # The previous rule's sums cannot be recomputed by this code; `upshift ledger rollup
    # --rebuild` of the older release restores them after a downgrade.
    pass
