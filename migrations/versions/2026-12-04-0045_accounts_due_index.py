"""The renewal workers find due accounts through an index: every replica polls every few seconds,
and a sequential scan of a million accounts each time would cost more than the renewals.

Revision ID: 0012_accounts_due_index
Revises: 0011_credit_balance
Create Date: 2026-12-04 00:45:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012_accounts_due_index"
down_revision: str | None = "0011_credit_balance"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_accounts_due", "accounts", ["current_period_end", "id"])


def downgrade() -> None:
    op.drop_index("ix_accounts_due", table_name="accounts")
