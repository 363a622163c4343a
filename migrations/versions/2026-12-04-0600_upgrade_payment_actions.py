"""An upgrade whose payment waits for the customer (3-D Secure) keeps what it needs to be
applied once paid: the quoted change and the provider's pending invoice.

Revision ID: 0013_upgrade_payment_actions
Revises: 0012_accounts_due_index
Create Date: 2026-12-04 06:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_upgrade_payment_actions"
down_revision: str | None = "0012_accounts_due_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("upgrades") as batch:
        batch.add_column(sa.Column("pending", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("upgrades") as batch:
        batch.drop_column("pending")
