"""Tables of billing: subscription lines as billed, invoices, scheduled changes, upgrades, inbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.adapters.orm import Base


class SubscriptionItemRow(Base):
    """One recurring line of an account's subscription and what was charged for it this period.

    Kept for both billing backends: a second change in the same period credits what was
    actually charged, so the quote engine needs it (Stripe does not expose it per item).
    """

    __tablename__ = "subscription_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(128), ForeignKey("accounts.id"))
    key: Mapped[str] = mapped_column(String(80))
    lookup_key: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(200))
    unit_amount_minor: Mapped[int]
    quantity: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    billed_minor: Mapped[int]
    billed_from: Mapped[datetime]
    external_id: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (UniqueConstraint("account_id", "key"),)


class InvoiceRow(Base):
    __tablename__ = "invoices"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(128), ForeignKey("accounts.id"), index=True)
    external_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    billing_reason: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    amount_due_minor: Mapped[int]  # the invoice's total (negative: a credit to the customer)
    # of the total, what the customer's credit balance paid (Stripe: starting - ending balance)
    credit_applied_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    amount_paid_minor: Mapped[int]
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    created_at: Mapped[datetime]


class InvoiceLineRow(Base):
    __tablename__ = "invoice_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    invoice_id: Mapped[str] = mapped_column(String(64), ForeignKey("invoices.id"), index=True)
    key: Mapped[str] = mapped_column(String(80))
    description: Mapped[str] = mapped_column(String(300))
    quantity: Mapped[int]
    amount_minor: Mapped[int]
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    proration: Mapped[bool]


class ScheduledChangeRow(Base):
    """A downgrade (or any end-of-term change) waiting for the period end."""

    __tablename__ = "scheduled_changes"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(128), ForeignKey("accounts.id"), index=True)
    target: Mapped[dict[str, Any]]
    effective_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime]


class UpgradeRow(Base):
    """One upgrade request per (account, Idempotency-Key): its fingerprint and final response."""

    __tablename__ = "upgrades"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(128), ForeignKey("accounts.id"))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    offer_id: Mapped[str | None] = mapped_column(String(64))
    # applied | scheduled | requires_action (the payment waits for the customer) | expired
    status: Mapped[str] = mapped_column(String(16))
    response_status: Mapped[int]
    response_body: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    # While `requires_action`: the quoted change and the provider's pending invoice, to apply
    # it (and write its one ledger entry) when the invoice is paid.
    pending: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)

    __table_args__ = (UniqueConstraint("account_id", "idempotency_key"),)


class WebhookEventRow(Base):
    """The webhook inbox: stored once per provider event id, processed from here."""

    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]]
    received_at: Mapped[datetime]
    handled_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(String(1000))

    __table_args__ = (
        UniqueConstraint("source", "external_id"),
        Index("ix_webhook_events_unhandled", "handled_at"),
    )
