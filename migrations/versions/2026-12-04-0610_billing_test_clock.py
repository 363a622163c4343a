"""An account billed by a Stripe subscription on a test clock keeps the clock and its frozen
time: the account's billing moment (proration dates, period checks) is the clock's, not the
service's.

Revision ID: 0014_billing_test_clock
Revises: 0013_upgrade_payment_actions
Create Date: 2026-12-04 06:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_billing_test_clock"
down_revision: str | None = "0013_upgrade_payment_actions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("accounts", sa.Column("billing_test_clock_id", sa.String(255), nullable=True))
    op.add_column(
        "accounts", sa.Column("billing_frozen_time", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("billing_frozen_time")
        batch.drop_column("billing_test_clock_id")
