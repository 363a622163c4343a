"""Tables of upgrade offers: every offer shown is an impression, for the offer funnel."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, String
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


class OfferPageRow(Base):
    """The offers read model: per account, its offer page as last built by any replica, kept
    while nothing changed the account (see api.page_store).

    `stamp` counts the changes committed to the account: every transaction that changes what
    the account is offered adds one and clears the page, in the same transaction
    (adapters.offer_pages.bump_offer_pages). A page is stored only with the stamp its inputs
    were read at, so a page read before a change can never be stored after it.
    """

    __tablename__ = "offer_pages"

    account_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    stamp: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # The page (sealed: see api.page_store), what it was built with (the service's code and
    # catalogs) and until when it holds (the first moment its inputs change by time alone).
    page: Mapped[bytes | None] = mapped_column(LargeBinary)
    build: Mapped[str | None] = mapped_column(String(64))
    valid_until: Mapped[datetime | None]
    stored_at: Mapped[datetime | None]
