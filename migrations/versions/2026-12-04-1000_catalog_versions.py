"""Catalog versions published into the database (`upshift catalog publish`): every replica
serves them beside the files at its catalog path, and loads a new one without a restart. A
version is immutable once stored (accounts are priced at it); one withdrawn before anything was
priced at it keeps its row (`withdrawn_at`), so its name is never used for another document.

Revision ID: 0016_catalog_versions
Revises: 0015_account_catalog_versions
Create Date: 2026-12-04 10:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_catalog_versions"
down_revision: str | None = "0015_account_catalog_versions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "catalog_versions",
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("source", sa.String(255), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_catalog_versions")),
    )


def downgrade() -> None:
    op.drop_table("catalog_versions")
