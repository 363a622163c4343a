"""The offers read model: each account's offer page as last built, shared by every replica
(api.page_store). A page is kept while nothing changed the account: every transaction that
changes what an account is offered bumps its `stamp` and clears its page.

Revision ID: 0017_offer_pages
Revises: 0016_catalog_versions
Create Date: 2026-12-04 14:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_offer_pages"
down_revision: str | None = "0016_catalog_versions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "offer_pages",
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("stamp", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("page", sa.LargeBinary(), nullable=True),
        sa.Column("build", sa.String(64), nullable=True),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_offer_pages")),
    )
    if op.get_bind().dialect.name == "postgresql":
        # A read model, rebuilt from the accounts at will: not worth a WAL record per page
        # stored (PostgreSQL empties an unlogged table after a crash, and a standby has none;
        # both only cost the next page loads a build).
        op.execute("ALTER TABLE offer_pages SET UNLOGGED")


def downgrade() -> None:
    op.drop_table("offer_pages")
