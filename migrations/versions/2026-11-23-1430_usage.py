"""Usage: events, counters, milestones, threshold crossings and the signal outbox.

Revision ID: 0003_usage
Revises: 0002_ledger
Create Date: 2026-11-23 14:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_usage"
down_revision: str | None = "0002_ledger"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc(nullable: bool = False) -> dict:
    return {"type_": sa.DateTime(timezone=True), "nullable": nullable}


def upgrade() -> None:
    op.create_table(
        "usage_events",
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("account_id", sa.String(length=128), nullable=False),
        sa.Column("feature", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", **_utc()),
        sa.Column("period_start", **_utc()),
        sa.Column("received_at", **_utc()),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_usage_events")),
    )
    op.create_table(
        "usage_counters",
        sa.Column("account_id", sa.String(length=128), nullable=False),
        sa.Column("feature", sa.String(length=64), nullable=False),
        sa.Column("period_start", **_utc()),
        sa.Column("period_end", **_utc(nullable=True)),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("reading_at", **_utc(nullable=True)),
        sa.Column("updated_at", **_utc()),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_usage_counters_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint(
            "account_id", "feature", "period_start", name=op.f("pk_usage_counters")
        ),
    )
    op.create_table(
        "usage_milestones",
        sa.Column("account_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("reached_at", **_utc()),
        sa.Column("recorded_at", **_utc()),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_usage_milestones_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", "name", name=op.f("pk_usage_milestones")),
    )
    op.create_table(
        "signal_crossings",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=128), nullable=False),
        sa.Column("threshold_key", sa.String(length=64), nullable=False),
        sa.Column("feature", sa.String(length=64), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("at_percent", sa.Integer(), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("limit_value", sa.BigInteger(), nullable=False),
        sa.Column("period_start", **_utc()),
        sa.Column("period_end", **_utc()),
        sa.Column("motion", sa.String(length=16), nullable=False),
        sa.Column("acv_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("readiness_score", sa.Integer(), nullable=False),
        sa.Column("readiness_reasons", sa.JSON(), nullable=False),
        sa.Column("catalog_version", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", **_utc()),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_signal_crossings_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signal_crossings")),
        sa.UniqueConstraint(
            "account_id",
            "threshold_key",
            "period_start",
            name=op.f("uq_signal_crossings_account_id"),
        ),
    )
    op.create_table(
        "signal_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("signal_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", **_utc()),
        sa.Column("fanned_out_at", **_utc(nullable=True)),
        sa.ForeignKeyConstraint(
            ["signal_id"],
            ["signal_crossings.id"],
            name=op.f("fk_signal_outbox_signal_id_signal_crossings"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signal_outbox")),
        sa.UniqueConstraint("signal_id", name=op.f("uq_signal_outbox_signal_id")),
    )
    op.create_index(
        "ix_signal_outbox_pending",
        "signal_outbox",
        ["id"],
        unique=False,
        postgresql_where=sa.text("fanned_out_at IS NULL"),
        sqlite_where=sa.text("fanned_out_at IS NULL"),
    )
    op.create_table(
        "signal_deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=False),
        sa.Column("endpoint", sa.String(length=2048), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", **_utc(nullable=True)),
        sa.Column("delivered_at", **_utc(nullable=True)),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("created_at", **_utc()),
        sa.ForeignKeyConstraint(
            ["outbox_id"],
            ["signal_outbox.id"],
            name=op.f("fk_signal_deliveries_outbox_id_signal_outbox"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signal_deliveries")),
        sa.UniqueConstraint("outbox_id", "endpoint", name=op.f("uq_signal_deliveries_outbox_id")),
    )
    op.create_index(
        op.f("ix_signal_deliveries_next_attempt_at"),
        "signal_deliveries",
        ["next_attempt_at"],
        unique=False,
    )
    op.create_table(
        "signal_delivery_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("attempted_at", **_utc()),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["signal_deliveries.id"],
            name=op.f("fk_signal_delivery_attempts_delivery_id_signal_deliveries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signal_delivery_attempts")),
    )
    op.create_index(
        "ix_signal_delivery_attempts_delivery",
        "signal_delivery_attempts",
        ["delivery_id", "attempt"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_signal_delivery_attempts_delivery", table_name="signal_delivery_attempts")
    op.drop_table("signal_delivery_attempts")
    op.drop_index(op.f("ix_signal_deliveries_next_attempt_at"), table_name="signal_deliveries")
    op.drop_table("signal_deliveries")
    op.drop_index("ix_signal_outbox_pending", table_name="signal_outbox")
    op.drop_table("signal_outbox")
    op.drop_table("signal_crossings")
    op.drop_table("usage_milestones")
    op.drop_table("usage_counters")
    op.drop_table("usage_events")
