"""Local billing keeps a customer credit balance: a change whose total is negative credits the
account, and renewal invoices use that credit first (Stripe's customer balance).

Revision ID: 0011_credit_balance
Revises: 0010_rollup_loss_cap
Create Date: 2026-12-03 19:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_credit_balance"
down_revision: str | None = "0010_rollup_loss_cap"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "accounts",
        sa.Column("credit_balance_minor", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.add_column(
        "invoices",
        sa.Column("credit_applied_minor", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    with op.batch_alter_table("invoices") as batch:
        batch.drop_column("credit_applied_minor")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("credit_balance_minor")
