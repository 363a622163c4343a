"""Accounts keep the catalog version their prices come from (grandfathering) and the one their
limits come from. Accounts that exist already are stamped with the oldest version at the
service's catalog path: before versions existed the service ran one catalog file, and an
operator adds newer versions beside it. UPSHIFT_BACKFILL_CATALOG_VERSION names another.

Revision ID: 0015_account_catalog_versions
Revises: 0014_billing_test_clock
Create Date: 2026-12-04 09:00:00+00:00
"""

import os
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision: str = "0015_account_catalog_versions"
down_revision: str | None = "0014_billing_test_clock"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BUNDLED = Path(__file__).resolve().parents[2] / "pricing_catalog"


def backfill_version() -> str:
    named = os.environ.get("UPSHIFT_BACKFILL_CATALOG_VERSION")
    if named:
        return named
    from service.adapters.catalog_loader import load_catalogs
    from service.settings import Settings

    for path in (Settings().catalog_path, BUNDLED):
        if Path(path).exists():
            return load_catalogs(path).versions[0].version
    raise RuntimeError("no catalog to stamp accounts with: set UPSHIFT_BACKFILL_CATALOG_VERSION")


def upgrade() -> None:
    op.add_column("accounts", sa.Column("catalog_version", sa.String(64), nullable=True))
    op.add_column("accounts", sa.Column("limits_version", sa.String(64), nullable=True))
    accounts = sa.table(
        "accounts", sa.column("catalog_version", sa.String), sa.column("limits_version", sa.String)
    )
    if op.get_bind().execute(sa.text("SELECT 1 FROM accounts LIMIT 1")).first() is not None:
        version = backfill_version()
        op.execute(accounts.update().values(catalog_version=version, limits_version=version))
    with op.batch_alter_table("accounts") as batch:
        batch.alter_column("catalog_version", existing_type=sa.String(64), nullable=False)
        batch.alter_column("limits_version", existing_type=sa.String(64), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("limits_version")
        batch.drop_column("catalog_version")
