"""Offers: the offer-impression log behind the offer funnel.

Revision ID: 0004_offers
Revises: 0003_usage
Create Date: 2026-11-23 14:40:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_offers"
down_revision: str | None = "0003_usage"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "offer_impressions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("offer_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=128), nullable=False),
        sa.Column("engine", sa.String(length=16), nullable=False),
        sa.Column("target", sa.JSON(), nullable=False),
        sa.Column("amount_due_minor", sa.Integer(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason_codes", sa.JSON(), nullable=False),
        sa.Column("signal_ids", sa.JSON(), nullable=False),
        sa.Column("days_since_activation", sa.Integer(), nullable=True),
        sa.Column("in_activation_window", sa.Boolean(), nullable=False),
        sa.Column("catalog_version", sa.String(length=64), nullable=False),
        sa.Column("shown_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_offer_impressions_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offer_impressions")),
    )
    op.create_index(
        "ix_offer_impressions_account_shown", "offer_impressions", ["account_id", "shown_at"]
    )
    op.create_index(
        op.f("ix_offer_impressions_offer_id"), "offer_impressions", ["offer_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_offer_impressions_offer_id"), table_name="offer_impressions")
    op.drop_index("ix_offer_impressions_account_shown", table_name="offer_impressions")
    op.drop_table("offer_impressions")
