"""MRR movements: their kinds and engines, classification, plan snapshots and the entry a
writer drafts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from service.domain.ledger.values import (
    optional_text,
    require_int,
    require_non_negative,
    require_text,
)
from service.domain.money import Money, monthly_from_interval, validate_currency
from service.domain.periods import require_utc


class MovementKind(StrEnum):
    NEW = "new"
    EXPANSION = "expansion"
    CONTRACTION = "contraction"
    CHURN = "churn"
    REACTIVATION = "reactivation"


class Engine(StrEnum):
    SEAT = "seat"
    UPSELL = "upsell"
    ADDON = "addon"
    STRATEGIC = "strategic"
    # A catalog migration (`upshift catalog migrate`): the same plan at another catalog
    # version's prices. Reports keep expansion from price apart from seats, upsell and add-ons.
    PRICE_UPLIFT = "price_uplift"


# The engines that sell: offers are made for them, so the offer funnel has a row for each. A
# price uplift is no offer (an operator moves accounts to new prices), so it has no funnel row.
OFFER_ENGINES: Final[tuple[Engine, ...]] = (
    Engine.SEAT,
    Engine.UPSELL,
    Engine.ADDON,
    Engine.STRATEGIC,
)


class Source(StrEnum):
    SELF_SERVE_OFFER = "self_serve_offer"
    API = "api"
    WEBHOOK = "webhook"
    ADMIN = "admin"


class Motion(StrEnum):
    SELF_SERVE = "self_serve"
    CS_ASSISTED = "cs_assisted"
    SALES_ASSISTED = "sales_assisted"


def classify(mrr_before: int, mrr_after: int, *, has_paid_before: bool) -> MovementKind | None:
    """The kind of an MRR change, or None when MRR did not change (no movement, no ledger row).

    `has_paid_before` only matters when MRR starts at 0: it separates a first purchase (new)
    from a return after churn (reactivation).
    """
    require_non_negative(mrr_before, "mrr_before")
    require_non_negative(mrr_after, "mrr_after")
    if mrr_after == mrr_before:
        return None
    if mrr_before == 0:
        return MovementKind.REACTIVATION if has_paid_before else MovementKind.NEW
    if mrr_after == 0:
        return MovementKind.CHURN
    return MovementKind.EXPANSION if mrr_after > mrr_before else MovementKind.CONTRACTION


@dataclass(frozen=True, slots=True)
class PlanSnapshot:
    """What an account is subscribed to: tier key, seat count and add-on quantities, and the
    catalog version its prices come from ("": not known).

    Add-ons with quantity 0 are dropped, so "absent" and "zero" compare equal.
    """

    tier: str
    seats: int
    addons: Mapping[str, int] = field(default_factory=dict)
    version: str = ""

    def __post_init__(self) -> None:
        require_text(self.tier, "tier")
        require_non_negative(self.seats, "seats")
        quantities: dict[str, int] = {}
        for key, quantity in self.addons.items():
            if require_non_negative(quantity, f"add-on {key!r} quantity"):
                quantities[require_text(key, "add-on key")] = quantity
        object.__setattr__(self, "addons", MappingProxyType(quantities))


def engine_for_change(
    before: PlanSnapshot, after: PlanSnapshot, *, strategic: bool = False
) -> Engine | None:
    """The engine that explains a plan change, or None when the plan did not change.

    Precedence is tier > seats > add-ons > catalog version so that every change maps to exactly
    one engine: a tier change with new seats is an upsell, and seats plus add-ons without a tier
    change count as seat. The same items at another catalog version (both snapshots naming one)
    are a price uplift: a catalog migration, or a price decrease as a contraction. `strategic`
    (admin or sales deals) overrides everything, including a price-only change. Works the same
    way for downgrades, giving the engine of a contraction.
    """
    if strategic:
        return Engine.STRATEGIC
    if before.tier != after.tier:
        return Engine.UPSELL
    if before.seats != after.seats:
        return Engine.SEAT
    if dict(before.addons) != dict(after.addons):
        return Engine.ADDON
    if before.version and after.version and before.version != after.version:
        return Engine.PRICE_UPLIFT
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class RecurringLine:
    """One recurring subscription line: a unit price billed every `interval_months` months."""

    unit_amount: int
    currency: str
    quantity: int = 1
    interval_months: int = 1

    def __post_init__(self) -> None:
        require_non_negative(self.unit_amount, "unit_amount")
        require_non_negative(self.quantity, "quantity")
        if require_int(self.interval_months, "interval_months") < 1:
            raise ValueError(f"interval_months must be at least 1, got {self.interval_months}")
        object.__setattr__(self, "currency", validate_currency(self.currency))

    @property
    def mrr(self) -> Money:
        # Quantity first: the invoiced line amount is what gets normalized, like Stripe bills it.
        return Money(
            monthly_from_interval(self.unit_amount * self.quantity, self.interval_months),
            self.currency,
        )


def subscription_mrr(lines: Iterable[RecurringLine], *, currency: str) -> Money:
    """A subscription's MRR: normalize each line to a month, then sum the rounded lines.

    Per-line rounding keeps MRR equal to the sum of the line MRRs shown anywhere else; it may
    differ by up to half a minor unit per line from normalizing the total.
    """
    total = Money.zero(currency)
    for line in lines:
        total = total + line.mrr
    return total


def _checked_movement(
    kind: object, engine: object, mrr_before: int, mrr_after: int
) -> tuple[MovementKind, Engine | None]:
    movement_kind = MovementKind(kind)
    movement_engine = None if engine is None else Engine(engine)
    expected = classify(
        mrr_before, mrr_after, has_paid_before=movement_kind is MovementKind.REACTIVATION
    )
    if expected is None:
        raise ValueError("MRR did not change: that is not a movement")
    if expected is not movement_kind:
        raise ValueError(f"MRR {mrr_before} -> {mrr_after} is {expected}, not {movement_kind}")
    if movement_kind is MovementKind.EXPANSION and movement_engine is None:
        # Reports split expansion by engine; an unattributed expansion would vanish from them.
        raise ValueError("an expansion needs the engine that produced it")
    if movement_engine is not None and movement_kind not in (
        MovementKind.EXPANSION,
        MovementKind.CONTRACTION,
    ):
        raise ValueError(f"a {movement_kind} movement carries no engine")
    return movement_kind, movement_engine


@dataclass(frozen=True, slots=True, kw_only=True)
class Movement:
    """The report-relevant part of one MRR movement; `delta` is derived, never supplied."""

    account_id: str
    kind: MovementKind
    engine: Engine | None
    mrr_before: int
    mrr_after: int
    currency: str
    occurred_at: datetime
    delta: int = field(init=False)

    def __post_init__(self) -> None:
        require_text(self.account_id, "account_id")
        kind, engine = _checked_movement(self.kind, self.engine, self.mrr_before, self.mrr_after)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "engine", engine)
        object.__setattr__(self, "currency", validate_currency(self.currency))
        object.__setattr__(self, "occurred_at", require_utc(self.occurred_at, "occurred_at"))
        object.__setattr__(self, "delta", self.mrr_after - self.mrr_before)


@dataclass(frozen=True, slots=True, kw_only=True)
class Attribution:
    """Why a movement happened; `signal_ids` are kept sorted and unique so equal sets hash equal."""

    motion: Motion
    offer_id: str | None = None
    signal_ids: tuple[str, ...] = ()
    days_since_activation: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "motion", Motion(self.motion))
        optional_text(self.offer_id, "offer_id")
        signals = {require_text(signal, "signal id") for signal in self.signal_ids}
        object.__setattr__(self, "signal_ids", tuple(sorted(signals)))
        if self.days_since_activation is not None:
            # None means the account has not reached the milestone yet; negative is meaningless.
            require_non_negative(self.days_since_activation, "days_since_activation")


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerEntryDraft:
    """One ledger row before it is stored: the movement plus its provenance."""

    idempotency_key: str
    account_id: str
    kind: MovementKind
    engine: Engine | None
    mrr_before: int
    mrr_after: int
    currency: str
    source: Source
    attribution: Attribution
    occurred_at: datetime
    stripe_invoice_id: str | None = None
    stripe_subscription_id: str | None = None
    catalog_version: str | None = None
    delta: int = field(init=False)

    def __post_init__(self) -> None:
        require_text(self.idempotency_key, "idempotency_key")
        require_text(self.account_id, "account_id")
        kind, engine = _checked_movement(self.kind, self.engine, self.mrr_before, self.mrr_after)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "engine", engine)
        object.__setattr__(self, "source", Source(self.source))
        object.__setattr__(self, "currency", validate_currency(self.currency))
        object.__setattr__(self, "occurred_at", require_utc(self.occurred_at, "occurred_at"))
        optional_text(self.stripe_invoice_id, "stripe_invoice_id")
        optional_text(self.stripe_subscription_id, "stripe_subscription_id")
        optional_text(self.catalog_version, "catalog_version")
        if not isinstance(self.attribution, Attribution):
            raise TypeError("attribution must be an Attribution")
        object.__setattr__(self, "delta", self.mrr_after - self.mrr_before)

    @property
    def movement(self) -> Movement:
        return Movement(
            account_id=self.account_id,
            kind=self.kind,
            engine=self.engine,
            mrr_before=self.mrr_before,
            mrr_after=self.mrr_after,
            currency=self.currency,
            occurred_at=self.occurred_at,
        )

    def to_record(self) -> dict[str, object]:
        """The flat field -> value mapping that is hashed; stored rows use the same keys."""
        return {
            "idempotency_key": self.idempotency_key,
            "account_id": self.account_id,
            "kind": self.kind,
            "engine": self.engine,
            "mrr_before": self.mrr_before,
            "mrr_after": self.mrr_after,
            "delta": self.delta,
            "currency": self.currency,
            "source": self.source,
            "offer_id": self.attribution.offer_id,
            "signal_ids": list(self.attribution.signal_ids),
            "motion": self.attribution.motion,
            "days_since_activation": self.attribution.days_since_activation,
            "occurred_at": self.occurred_at,
            "stripe_invoice_id": self.stripe_invoice_id,
            "stripe_subscription_id": self.stripe_subscription_id,
            "catalog_version": self.catalog_version,
        }


RECORD_FIELDS: Final[frozenset[str]] = frozenset(
    {
        "idempotency_key",
        "account_id",
        "kind",
        "engine",
        "mrr_before",
        "mrr_after",
        "delta",
        "currency",
        "source",
        "offer_id",
        "signal_ids",
        "motion",
        "days_since_activation",
        "occurred_at",
        "stripe_invoice_id",
        "stripe_subscription_id",
        "catalog_version",
    }
)
