"""Bodies of the quote, upgrade-offer and session-token endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import orjson
from fastapi import Path
from pydantic import AwareDatetime, BaseModel, Field, StrictInt

from service.api.schemas import AddonQuantities, MoneyOut, Strict
from service.domain.accounts import Plan
from service.domain.catalog import Interval, Timing
from service.domain.offers import OfferEngine
from service.domain.proration import ProrationLine
from service.domain.quotes import ChangeKind, PriceBreakdown, Quote
from service.services.offers import AccountOffers, PricedOffer, is_sales_assisted


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


class PriceBreakdownOut(BaseModel):
    """list_amount - discounts + tax - credit_applied == amount_due (the billing provider's)."""

    list_amount: MoneyOut = Field(description="The change at the catalog's list prices")
    discounts: MoneyOut = Field(
        description="Taken off before tax by the billing provider (Stripe: the subscription's "
        "coupons, which it folds into proration lines); list_amount minus its pre-tax total"
    )
    tax: MoneyOut = Field(description="Tax added on top (exclusive tax rates)")
    credit_applied: MoneyOut = Field(
        description="The customer's credit balance used; negative when credit is left over"
    )
    amount_due: MoneyOut = Field(description="Equals amount_due_now")


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
    price_breakdown: PriceBreakdownOut | None = Field(
        default=None,
        description="Why amount_due_now differs from the list price, when the billing provider "
        "priced the change (Stripe mode: its invoice preview); null at list prices",
    )


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


def quote_out(quote: Quote) -> QuoteOut:
    return QuoteOut.model_validate(quote_payload(quote))


# -- the hot path -------------------------------------------------------------------------------
# The offer endpoint runs on every page load; building the pydantic models above costs more
# than pricing the offers. These build the same JSON as `OffersOut(...).model_dump(mode="json")`
# directly (a test holds the two equal, and schemathesis checks responses against the schema);
# times stay datetimes until `dump_json` writes them as RFC 3339 in UTC with a Z, as pydantic.


def dump_json(payload: object) -> bytes:
    return orjson.dumps(payload, option=orjson.OPT_UTC_Z)


def _plan(plan: Plan) -> dict[str, object]:
    return {
        "tier": plan.tier,
        "interval": plan.interval.value,
        "seats": plan.seats,
        "addons": dict(plan.addons),
    }


def quote_payload(quote: Quote) -> dict[str, object]:
    return {
        "current": _plan(quote.current),
        "target": _plan(quote.target),
        "change": quote.kind.value,
        "timing": quote.timing.value,
        "proration_date": quote.proration_date,
        "lines": [line_payload(line) for line in quote.lines],
        "amount_due_now": quote.amount_due.as_json(),
        "new_recurring": quote.new_recurring.as_json(),
        "new_mrr": quote.new_mrr.as_json(),
        "interval": quote.target.interval.value,
        "next_invoice_date": quote.next_invoice_at,
        "effective_at": quote.effective_at,
        "catalog_version": quote.catalog_version,
        "price_breakdown": _breakdown(quote.breakdown),
    }


def _breakdown(breakdown: PriceBreakdown | None) -> dict[str, object] | None:
    if breakdown is None:
        return None
    return {
        "list_amount": breakdown.list_amount.as_json(),
        "discounts": breakdown.discounts.as_json(),
        "tax": breakdown.tax.as_json(),
        "credit_applied": breakdown.credit_applied.as_json(),
        "amount_due": breakdown.amount_due.as_json(),
    }


def line_payload(line: ProrationLine) -> dict[str, object]:
    return {
        "key": line.key,
        "description": line.description,
        "quantity": line.quantity,
        "amount": line.amount.as_json(),
        "period_start": line.period.start,
        "period_end": line.period.end,
        "proration": line.proration,
    }


def offer_payload(offer: PricedOffer) -> dict[str, object]:
    candidate, quote = offer.candidate, offer.quote
    return {
        "id": offer.id,
        "engine": candidate.engine.value,
        "action": "contact_sales" if is_sales_assisted(offer) else "upgrade",
        "reasons": list(candidate.reasons),
        "signal_ids": list(candidate.signal_ids),
        "score": offer.score,
        "target_tier": candidate.target_tier,
        "target": _plan(candidate.target) if candidate.target else None,
        "price": quote.new_recurring.as_json() if quote else None,
        "quote": quote_payload(quote) if quote else None,
        "expires_at": offer.expires_at,
        "offer_token": offer.token,
    }


def offers_payload(result: AccountOffers) -> dict[str, object]:
    return {
        "account_id": result.account_id,
        "in_activation_window": result.in_activation_window,
        "offers": [offer_payload(offer) for offer in result.offers],
    }


OfferIdPath = Annotated[
    str,
    Path(
        pattern=r"^off_[0-9a-f]{24}$",
        description="The `id` of an offer from GET /v1/accounts/{account_id}/upgrade-offers",
        examples=["off_3f9a1c0b7d2e4f5a6b7c8d9e"],
    ),
]


class OfferSeenOut(BaseModel):
    account_id: str
    offer_id: str
    seen_at: datetime = Field(description="When the offer was first reported seen")
