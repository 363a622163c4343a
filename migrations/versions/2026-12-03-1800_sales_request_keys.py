"""Signal keys fit a sales request: "sales_request." before a tier key of up to 64 characters.

Revision ID: 0009_sales_request_keys
Revises: 0008_offer_views
Create Date: 2026-12-03 18:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_sales_request_keys"
down_revision: str | None = "0008_offer_views"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("signal_crossings") as batch:
        batch.alter_column(
            "threshold_key", type_=sa.String(length=80), existing_type=sa.String(length=64)
        )


def downgrade() -> None:
    with op.batch_alter_table("signal_crossings") as batch:
        batch.alter_column(
            "threshold_key", type_=sa.String(length=64), existing_type=sa.String(length=80)
        )
