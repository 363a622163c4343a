"""Bodies of the quote, upgrade-offer and session-token endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, Field, StrictInt

from service.api.schemas import AddonQuantities, MoneyOut, Strict
from service.domain.accounts import Plan
from service.domain.catalog import Interval, Timing
from service.domain.offers import OfferEngine
from service.domain.quotes import ChangeKind, Quote


class TargetIn(Strict):
    """The plan to move to; omitted fields keep the current plan's value."""

    tier: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    seats: Annotated[StrictInt, Field(ge=0, le=10_000_000)] | None = None
    addons: AddonQuantities | None = None
    interval: Interval | None = None


class QuoteIn(Strict):
    target: TargetIn
    proration_date: AwareDatetime | None = Field(
        default=None, description="Pinned proration time; now (whole seconds) when omitted"
    )


class PlanOut(BaseModel):
    tier: str
    interval: Interval
    seats: int
    addons: dict[str, int]


class QuoteLineOut(BaseModel):
    key: str
    description: str
    quantity: int
    amount: MoneyOut = Field(description="Negative: a credit for unused time")
    period_start: datetime
    period_end: datetime
    proration: bool


class QuoteOut(BaseModel):
    current: PlanOut
    target: PlanOut
    change: ChangeKind
    timing: Timing
    proration_date: datetime
    lines: list[QuoteLineOut]
    amount_due_now: MoneyOut = Field(description="Charged at once; negative is a credit balance")
    new_recurring: MoneyOut = Field(description="Billed every interval after the change")
    new_mrr: MoneyOut
    interval: Interval
    next_invoice_date: datetime
    effective_at: datetime = Field(description="When the change applies (period end if scheduled)")
    catalog_version: str


class OfferOut(BaseModel):
    id: str
    engine: OfferEngine
    action: Literal["upgrade", "contact_sales"]
    reasons: list[str]
    signal_ids: list[str]
    score: int
    target_tier: str
    target: PlanOut | None = Field(description="Null for a sales-assisted offer")
    price: MoneyOut | None = Field(description="New recurring amount; null when sold by sales")
    quote: QuoteOut | None
    expires_at: datetime
    offer_token: str | None = Field(
        description="Signed by Upshift: binds account, target, amount, proration date, catalog "
        "version and expiry. Send it to the upgrade endpoint."
    )


class OffersOut(BaseModel):
    account_id: str
    in_activation_window: bool
    offers: list[OfferOut]


class SessionTokenIn(Strict):
    ttl_seconds: Annotated[StrictInt, Field(ge=60, le=3600)] = 900


class SessionTokenOut(BaseModel):
    token: str
    account_id: str
    expires_at: datetime


def plan_out(plan: Plan) -> PlanOut:
    return PlanOut(tier=plan.tier, interval=plan.interval, seats=plan.seats, addons=plan.addons)


def money_out(minor: int, currency: str) -> MoneyOut:
    return MoneyOut(amount_minor=minor, currency=currency)


def quote_out(quote: Quote) -> QuoteOut:
    return QuoteOut(
        current=plan_out(quote.current),
        target=plan_out(quote.target),
        change=quote.kind,
        timing=quote.timing,
        proration_date=quote.proration_date,
        lines=[
            QuoteLineOut(
                key=line.key,
                description=line.description,
                quantity=line.quantity,
                amount=money_out(line.amount.minor, line.amount.currency),
                period_start=line.period.start,
                period_end=line.period.end,
                proration=line.proration,
            )
            for line in quote.lines
        ],
        amount_due_now=money_out(quote.amount_due.minor, quote.amount_due.currency),
        new_recurring=money_out(quote.new_recurring.minor, quote.new_recurring.currency),
        new_mrr=money_out(quote.new_mrr.minor, quote.new_mrr.currency),
        interval=quote.target.interval,
        next_invoice_date=quote.next_invoice_at,
        effective_at=quote.effective_at,
        catalog_version=quote.catalog_version,
    )
