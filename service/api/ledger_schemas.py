"""Response bodies and query types of the ledger and report endpoints (minor units, UTC)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)

from service.api.schemas import AccountId
from service.domain.ledger import Engine, Granularity, Motion, MovementKind, Source

_ISO_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]")


def _iso_only(value: object) -> object:
    # Lax pydantic reads "0.5" or "1700000000" as Unix time; the contract says RFC 3339.
    if isinstance(value, str) and not _ISO_DATE_TIME.match(value):
        raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2026-01-01T00:00:00Z")
    return value


def _to_utc(moment: datetime) -> datetime:
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00 is before the first representable UTC
        raise ValueError("timestamp is out of range") from None


UtcDatetime = Annotated[AwareDatetime, BeforeValidator(_iso_only), AfterValidator(_to_utc)]
Ratio = Annotated[
    str | None,
    Field(
        description="A decimal string with 4 places (1.1500 is 115%); null when undefined",
        examples=["1.1500"],
    ),
]


class StrictQuery(BaseModel):
    # Unknown query parameters are a 422, so a misspelt filter never silently widens a report.
    model_config = ConfigDict(extra="forbid")


class EntriesQuery(StrictQuery):
    from_: UtcDatetime | None = Field(
        None, alias="from", description="Only entries that occurred at or after this instant"
    )
    to: UtcDatetime | None = Field(None, description="Only entries that occurred before this")
    account: AccountId | None = Field(None, description="Only this account")
    kind: MovementKind | None = None
    engine: Engine | None = None
    limit: int = Field(100, ge=1, le=1000, description="Page size")
    cursor: str | None = Field(
        None,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The `next_cursor` of the previous page (opaque)",
    )


class ExportQuery(StrictQuery):
    format: Literal["csv", "jsonl"] = "csv"
    dataset: Literal["movements", "credit"] = Field(
        "movements",
        description="movements: the ledger's MRR movements; credit: the customers' credit "
        "balances as invoices granted and applied them",
    )
    from_: UtcDatetime | None = Field(
        None, alias="from", description="Only entries that occurred at or after this instant"
    )
    to: UtcDatetime | None = Field(None, description="Only entries that occurred before this")


class NrrQuery(StrictQuery):
    from_: UtcDatetime = Field(alias="from", description="Start of the first period")
    to: UtcDatetime = Field(description="End of the last period (exclusive)")
    granularity: Granularity = Granularity.MONTH


class LedgerEntryOut(BaseModel):
    id: int = Field(description="Ledger sequence number; entries are listed in this order")
    kind: MovementKind
    engine: Engine | None = Field(description="Set on expansion and contraction")
    mrr_before_minor: int
    mrr_after_minor: int
    mrr_delta_minor: int
    currency: str
    account_id: str
    source: Source
    offer_id: str | None
    signal_ids: list[str]
    motion: Motion
    days_since_activation: int | None
    stripe_invoice_id: str | None
    stripe_subscription_id: str | None
    catalog_version: str
    idempotency_key: str
    occurred_at: datetime
    recorded_at: datetime
    prev_hash: str
    hash: str = Field(description="sha256 over prev_hash and the entry's canonical JSON")


class LedgerPageOut(BaseModel):
    entries: list[LedgerEntryOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at end")


class ExpansionByEngineOut(BaseModel):
    seat: int
    upsell: int
    addon: int
    strategic: int
    price_uplift: int = Field(
        description="Expansion from a catalog migration: the same plan at a later version's prices"
    )


class PeriodReportOut(BaseModel):
    period_start: datetime
    period_end: datetime
    currency: str
    starting_mrr_minor: int
    new_minor: int
    expansion_minor: int
    expansion_by_engine_minor: ExpansionByEngineOut
    contraction_minor: int = Field(description="Magnitude, non-negative")
    churn_minor: int = Field(description="Magnitude, non-negative")
    reactivation_minor: int
    ending_mrr_minor: int
    retained_mrr_minor: int = Field(description="Starting cohort after expansion and losses")
    gross_retained_mrr_minor: int
    nrr: Ratio
    grr: Ratio
    quick_ratio: Ratio
    expansion_share: Ratio


class FunnelRowOut(BaseModel):
    engine: Engine
    in_activation_window: bool
    served: int = Field(description="Offers the API returned, one per page load")
    seen: int = Field(
        description="Distinct offers the frontend reported as displayed "
        "(PUT /v1/accounts/{account_id}/seen-offers/{offer_id})"
    )
    accepted: int = Field(description="Seen offers the customer took")
    conversion: Ratio = Field(description="accepted / seen; null when nothing was seen")


class OfferFunnelOut(BaseModel):
    rows: list[FunnelRowOut]
    median_days_to_first_expansion: str | None = Field(
        description="Median over accounts whose first post-activation expansion falls in the "
        "range; a decimal string (12.5 when the two middle values differ by one), null if none",
        examples=["12"],
    )


class NrrReportOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: datetime = Field(alias="from")
    to: datetime
    granularity: Granularity
    periods: list[PeriodReportOut]
    offer_funnel: OfferFunnelOut
