"""Billing: tables of the billing area.

Revision ID: 0005_billing
Revises: 0004_offers
Create Date: 2026-11-23 14:50:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_billing"
down_revision: str | None = "0004_offers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
