"""Tables of upgrade offers: every offer shown is an impression, for the offer funnel."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from service.adapters.orm import Base


class OfferImpressionRow(Base):
    """One offer shown to one account at one moment (append-only)."""

    __tablename__ = "offer_impressions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    offer_id: Mapped[str] = mapped_column(String(64), index=True)
    # The account's id, without a foreign key: an append-only log, like the ledger (see the
    # migration 0007_impressions_no_fk).
    account_id: Mapped[str] = mapped_column(String(128))
    engine: Mapped[str] = mapped_column(String(16))
    target: Mapped[dict[str, Any]]
    amount_due_minor: Mapped[int | None]
    currency: Mapped[str] = mapped_column(String(3))
    reason_codes: Mapped[list[str]]
    signal_ids: Mapped[list[str]]
    days_since_activation: Mapped[int | None]
    in_activation_window: Mapped[bool]
    catalog_version: Mapped[str] = mapped_column(String(64))
    shown_at: Mapped[datetime]

    __table_args__ = (Index("ix_offer_impressions_account_shown", "account_id", "shown_at"),)


class OfferViewRow(Base):
    """An offer the customer actually saw, reported by the frontend: once per offer id.

    The funnel counts these, not the offers the API served (a page may receive several offers
    and show one, and refresh often). Engine and window come from the offer's impression row,
    joined by offer id, so a report of an offer never served to that account counts nowhere.
    """

    __tablename__ = "offer_views"

    # Keyed by account too: a report naming another account's offer id cannot shadow its view.
    account_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    offer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(index=True)
