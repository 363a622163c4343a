"""Offer views: the offers a customer saw, as the frontend reports them (the funnel's "seen").

Revision ID: 0008_offer_views
Revises: 0007_impressions_no_fk
Create Date: 2026-12-03 08:15:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_offer_views"
down_revision: str | None = "0007_impressions_no_fk"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "offer_views",
        sa.Column("account_id", sa.String(length=128), nullable=False),
        sa.Column("offer_id", sa.String(length=64), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "offer_id", name=op.f("pk_offer_views")),
    )
    op.create_index(op.f("ix_offer_views_seen_at"), "offer_views", ["seen_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_offer_views_seen_at"), table_name="offer_views")
    op.drop_table("offer_views")
