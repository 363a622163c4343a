"""Request and response bodies of usage ingest, usage, milestones and signals."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, Field, StrictInt

from service.api.schemas import AccountId, Strict
from service.domain.catalog import Key
from service.domain.thresholds import Crossing, Motion, requested_tier
from service.domain.usage import MAX_BATCH, MAX_QUANTITY, UsageAction


def _as_utc(moment: datetime) -> datetime:
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        # Year 1 with a positive offset (or 9999 with a negative one) has no UTC equivalent.
        raise ValueError("timestamp out of range") from None


def _rfc3339_text(value: object) -> object:
    # The documented type is an RFC 3339 string; pydantic alone would take a Unix number too.
    if not isinstance(value, str | datetime):
        raise ValueError("must be an RFC 3339 date-time string with an offset")
    return value


UtcTimestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_rfc3339_text),
    AfterValidator(_as_utc),
    Field(description="RFC 3339 with an offset; stored in UTC", examples=["2026-11-10T12:00:00Z"]),
]
# Events skip the conversion (1,000 per batch): their rules compare aware times, which never
# overflows, and reject the out-of-range ones before anything converts them.
EventTimestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_rfc3339_text),
    Field(description="RFC 3339 with an offset; stored in UTC", examples=["2026-11-10T12:00:00Z"]),
]
FeatureKey = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
EventId = Annotated[
    str,
    Field(
        pattern=r"^[!-~]{1,128}$",
        description="The product's id for the event (printable ASCII); a replay is a no-op",
    ),
]


class UsageEventIn(Strict):
    event_id: EventId
    account_id: AccountId
    feature: FeatureKey = Field(description="A catalog feature key, or `seats` (active seats)")
    quantity: Annotated[StrictInt, Field(ge=-MAX_QUANTITY, le=MAX_QUANTITY)]
    timestamp: EventTimestamp
    action: UsageAction = Field(
        default=UsageAction.increment,
        description="increment: add the quantity; set: the counter now reads the quantity",
    )


class UsageBatchIn(Strict):
    events: Annotated[list[UsageEventIn], Field(min_length=1, max_length=MAX_BATCH)]


class RejectedEventOut(BaseModel):
    index: int = Field(description="Position of the event in the batch")
    event_id: str
    field: str = Field(description="The offending field, e.g. events[3].quantity")
    code: str
    message: str


class CrossingOut(BaseModel):
    id: str
    account_id: str
    threshold_key: str
    feature: str
    level: str
    at_percent: int
    used: int
    limit: int
    period_start: datetime
    period_end: datetime
    recorded_at: datetime
    motion: Motion

    @classmethod
    def of(cls, crossing: Crossing) -> CrossingOut:
        return cls(
            id=crossing.id,
            account_id=crossing.account_id,
            threshold_key=crossing.threshold_key,
            feature=crossing.feature,
            level=crossing.level,
            at_percent=crossing.at_percent,
            used=crossing.used,
            limit=crossing.limit,
            period_start=crossing.period_start,
            period_end=crossing.period_end,
            recorded_at=crossing.recorded_at,
            motion=Motion(crossing.motion),
        )


class SalesRequestIn(Strict):
    tier: Key = Field(description="The catalog tier the customer wants to talk about")


class SalesRequestOut(BaseModel):
    signal_id: str = Field(description="The signal's id (the outbox delivers it once)")
    account_id: str
    tier: str
    motion: Motion = Field(description="Always sales_assisted: the sales team acts")
    requested_at: datetime = Field(description="When the customer first asked in this period")
    period_start: datetime
    period_end: datetime

    @classmethod
    def of(cls, request: Crossing) -> SalesRequestOut:
        return cls(
            signal_id=request.id,
            account_id=request.account_id,
            tier=requested_tier(request) or "",
            motion=Motion(request.motion),
            requested_at=request.recorded_at,
            period_start=request.period_start,
            period_end=request.period_end,
        )


class UsageIngestOut(BaseModel):
    accepted: int = Field(description="Events counted now")
    duplicates: int = Field(description="Events whose id was already counted: no change")
    rejected: list[RejectedEventOut] = Field(description="Events refused, nothing of them kept")
    signals: list[CrossingOut] = Field(description="Threshold crossings this batch recorded")


class FeatureUsageOut(BaseModel):
    feature: str
    kind: str = Field(description="capacity, metered, boolean or seats")
    used: int
    limit: int | bool | None = Field(description="null = unlimited; true/false for on/off")
    utilization_percent: int | None = Field(description="floor(used × 100 / limit)")
    period_start: datetime | None = Field(description="null for lifetime counters")
    period_end: datetime | None


class AccountUsageOut(BaseModel):
    account_id: str
    at: datetime
    features: list[FeatureUsageOut]


class MilestoneIn(Strict):
    name: FeatureKey = Field(description="The catalog's activation milestone or value workflow")
    timestamp: UtcTimestamp | None = Field(default=None, description="When; now if omitted")


class MilestonesIn(Strict):
    milestones: Annotated[list[MilestoneIn], Field(min_length=1, max_length=100)]


class MilestoneOut(BaseModel):
    name: str
    reached_at: datetime = Field(description="The first timestamp reported for this name")
    duplicate: bool


class MilestonesOut(BaseModel):
    milestones: list[MilestoneOut]
    signals: list[CrossingOut]


class ActivationOut(BaseModel):
    milestone: str
    activated_at: datetime | None
    days_since_activation: int | None
    window_days: int
    in_window: bool


class SignalsOut(BaseModel):
    account_id: str
    score: int = Field(ge=0, le=100, description="Expansion readiness, 0–100")
    reasons: list[str] = Field(description="Stable codes, e.g. at_limit:seats")
    motion: Motion
    activation: ActivationOut
    crossings: list[CrossingOut] = Field(description="Most recent first")
