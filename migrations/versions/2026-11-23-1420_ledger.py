"""Ledger: tables of the ledger area.

Revision ID: 0002_ledger
Revises: a2234ec1f4f8
Create Date: 2026-11-23 14:20:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_ledger"
down_revision: str | None = "a2234ec1f4f8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
