"""SQLAlchemy 2 typed tables; the one place that knows how rows are shaped."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Index, Integer, MetaData, String, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on PostgreSQL (timestamptz) and SQLite (naive text) alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: Upshift stores UTC, timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[str]: JSON}


class AccountRow(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    tier: Mapped[str] = mapped_column(String(64))
    interval: Mapped[str] = mapped_column(String(8))
    seats: Mapped[int] = mapped_column(Integer)
    addons: Mapped[dict[str, Any]] = mapped_column(default=dict)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))
    current_period_start: Mapped[datetime]
    current_period_end: Mapped[datetime]
    billing_customer_id: Mapped[str | None] = mapped_column(String(255))
    billing_subscription_id: Mapped[str | None] = mapped_column(String(255), index=True)
    # Renewals count whole intervals from here, so a cycle anchored on the 31st comes back to
    # the 31st after February (as Stripe's billing_cycle_anchor does).
    billing_cycle_anchor: Mapped[datetime | None]
    # Stripe test mode: the test clock the subscription lives on and that clock's frozen time,
    # which is the account's billing "now" (proration dates, period checks) while it is set.
    billing_test_clock_id: Mapped[str | None] = mapped_column(String(255))
    billing_frozen_time: Mapped[datetime | None]
    # Local billing: credit the customer is owed (a change whose total was negative), applied to
    # the next renewal invoices first, as Stripe's customer balance is. Minor units, >= 0.
    credit_balance_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # The catalog version the plan's prices come from (grandfathering: kept until a tier change
    # or a migration), and the one its limits and entitlements come from (a rollout may move
    # limits without touching the price). See domain.catalog.CatalogHistory.
    catalog_version: Mapped[str] = mapped_column(String(64))
    limits_version: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __mapper_args__ = {"version_id_col": version}
    # The renewal workers' claim: due accounts, oldest boundary first (services.renewals).
    __table_args__ = (Index("ix_accounts_due", "current_period_end", "id"),)


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column()
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
