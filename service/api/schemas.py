"""Request and response bodies of the public API (JSON, integer minor units, UTC times)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt

from service.domain.accounts import AccountStatus
from service.domain.catalog import AddOnKind, FeatureKind, Interval, Timing

AccountIdPattern = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
AccountId = Annotated[str, Field(pattern=AccountIdPattern)]
AddonQuantities = dict[
    Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)],
    Annotated[StrictInt, Field(ge=1, le=1_000_000)],
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MoneyOut(BaseModel):
    amount_minor: int = Field(description="Integer minor units (cents)")
    currency: str


class AccountPut(Strict):
    tier: Annotated[str, Field(min_length=1, max_length=64)]
    interval: Interval = Interval.month
    seats: Annotated[StrictInt, Field(ge=0, le=10_000_000)]
    addons: AddonQuantities = Field(default_factory=dict)
    name: Annotated[str, Field(max_length=200)] | None = None
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = None
    catalog_version: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        default=None,
        description="The catalog version the plan's prices come from. Default: the version in "
        "force for a new account or a new tier; the account's own otherwise (grandfathered)",
    )
    status: AccountStatus = AccountStatus.active
    current_period_start: AwareDatetime | None = None
    current_period_end: AwareDatetime | None = None
    billing_customer_id: Annotated[str, Field(max_length=255)] | None = None
    billing_subscription_id: Annotated[str, Field(max_length=255)] | None = None


class AccountOut(BaseModel):
    id: str
    name: str | None
    tier: str
    interval: Interval
    seats: int
    addons: dict[str, int]
    currency: str
    status: AccountStatus
    current_period_start: datetime
    current_period_end: datetime
    billing_customer_id: str | None
    billing_subscription_id: str | None
    catalog_version: str = Field(
        description="The catalog version the plan is priced at (kept until a tier change or a "
        "catalog migration: grandfathering)"
    )
    limits_version: str = Field(description="The catalog version its limits come from")
    recurring_amount: MoneyOut = Field(description="Billed every interval")
    mrr: MoneyOut = Field(description="Monthly recurring revenue (yearly / 12)")
    credit_balance: MoneyOut = Field(
        description="Local billing: credit owed to the customer (a change whose total was "
        "negative), used first by the next renewal invoices"
    )
    version: int
    created_at: datetime
    updated_at: datetime


class PriceOut(BaseModel):
    amount_minor: int
    currency: str


class TierPriceOut(BaseModel):
    base: PriceOut
    seat: PriceOut | None


class PathOut(BaseModel):
    to: str
    timing: Timing


class SeatsOut(BaseModel):
    included: int
    max: int


class TierOut(BaseModel):
    key: str
    name: str
    rank: int
    self_serve: bool
    prices: dict[Interval, TierPriceOut]
    seats: SeatsOut
    limits: dict[str, int | bool | None]
    addons: list[str]
    upgrades: list[PathOut]
    downgrades: list[PathOut]


class FeatureOut(BaseModel):
    key: str
    name: str
    kind: FeatureKind
    unit: str | None


class AddOnOut(BaseModel):
    key: str
    name: str
    kind: AddOnKind
    grants: dict[str, int | bool]
    max_quantity: int
    prices: dict[Interval, PriceOut]


class CatalogVersionOut(BaseModel):
    version: str
    effective_from: datetime


class CatalogOut(BaseModel):
    version: str = Field(description="The version in force: what new business is priced at")
    effective_from: datetime
    currency: str
    features: list[FeatureOut]
    tiers: list[TierOut]
    addons: list[AddOnOut]
    versions: list[CatalogVersionOut] = Field(
        description="Every version this replica serves, oldest first: earlier ones still price "
        "the accounts on them (grandfathering), a later one takes over for new business at its "
        "effective_from"
    )


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    status: str
    checks: dict[str, str]
