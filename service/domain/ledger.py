"""The MRR ledger: movement classification, hash-chained entries and expansion reports."""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from service.domain.money import Money, monthly_from_interval, validate_currency
from service.domain.periods import Period, add_months, require_utc


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


class Source(StrEnum):
    SELF_SERVE_OFFER = "self_serve_offer"
    API = "api"
    WEBHOOK = "webhook"
    ADMIN = "admin"


class Motion(StrEnum):
    SELF_SERVE = "self_serve"
    CS_ASSISTED = "cs_assisted"
    SALES_ASSISTED = "sales_assisted"


class Granularity(StrEnum):
    MONTH = "month"
    QUARTER = "quarter"


def _require_int(value: object, what: str) -> int:
    # bool is an int subclass; True as an amount is always a bug upstream.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an integer, got {value!r}")
    return value


def _require_non_negative(value: object, what: str) -> int:
    number = _require_int(value, what)
    if number < 0:
        raise ValueError(f"{what} must not be negative, got {number}")
    return number


def _require_text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _optional_text(value: object, what: str) -> str | None:
    return None if value is None else _require_text(value, what)


def classify(mrr_before: int, mrr_after: int, *, has_paid_before: bool) -> MovementKind | None:
    """The kind of an MRR change, or None when MRR did not change (no movement, no ledger row).

    `has_paid_before` only matters when MRR starts at 0: it separates a first purchase (new)
    from a return after churn (reactivation).
    """
    _require_non_negative(mrr_before, "mrr_before")
    _require_non_negative(mrr_after, "mrr_after")
    if mrr_after == mrr_before:
        return None
    if mrr_before == 0:
        return MovementKind.REACTIVATION if has_paid_before else MovementKind.NEW
    if mrr_after == 0:
        return MovementKind.CHURN
    return MovementKind.EXPANSION if mrr_after > mrr_before else MovementKind.CONTRACTION


@dataclass(frozen=True, slots=True)
class PlanSnapshot:
    """What an account is subscribed to: tier key, seat count and add-on quantities.

    Add-ons with quantity 0 are dropped, so "absent" and "zero" compare equal.
    """

    tier: str
    seats: int
    addons: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _require_text(self.tier, "tier")
        _require_non_negative(self.seats, "seats")
        quantities: dict[str, int] = {}
        for key, quantity in self.addons.items():
            if _require_non_negative(quantity, f"add-on {key!r} quantity"):
                quantities[_require_text(key, "add-on key")] = quantity
        object.__setattr__(self, "addons", MappingProxyType(quantities))


def engine_for_change(
    before: PlanSnapshot, after: PlanSnapshot, *, strategic: bool = False
) -> Engine | None:
    """The engine that explains a plan change, or None when the plan did not change.

    Precedence is tier > seats > add-ons so that every change maps to exactly one engine: a tier
    change with new seats is an upsell, and seats plus add-ons without a tier change count as
    seat. `strategic` (admin or sales deals) overrides everything, including a price-only change.
    Works the same way for downgrades, giving the engine of a contraction.
    """
    if strategic:
        return Engine.STRATEGIC
    if before.tier != after.tier:
        return Engine.UPSELL
    if before.seats != after.seats:
        return Engine.SEAT
    if dict(before.addons) != dict(after.addons):
        return Engine.ADDON
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class RecurringLine:
    """One recurring subscription line: a unit price billed every `interval_months` months."""

    unit_amount: int
    currency: str
    quantity: int = 1
    interval_months: int = 1

    def __post_init__(self) -> None:
        _require_non_negative(self.unit_amount, "unit_amount")
        _require_non_negative(self.quantity, "quantity")
        if _require_int(self.interval_months, "interval_months") < 1:
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
        _require_text(self.account_id, "account_id")
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
        _optional_text(self.offer_id, "offer_id")
        signals = {_require_text(signal, "signal id") for signal in self.signal_ids}
        object.__setattr__(self, "signal_ids", tuple(sorted(signals)))
        if self.days_since_activation is not None:
            # None means the account has not reached the milestone yet; negative is meaningless.
            _require_non_negative(self.days_since_activation, "days_since_activation")


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
        _require_text(self.idempotency_key, "idempotency_key")
        _require_text(self.account_id, "account_id")
        kind, engine = _checked_movement(self.kind, self.engine, self.mrr_before, self.mrr_after)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "engine", engine)
        object.__setattr__(self, "source", Source(self.source))
        object.__setattr__(self, "currency", validate_currency(self.currency))
        object.__setattr__(self, "occurred_at", require_utc(self.occurred_at, "occurred_at"))
        _optional_text(self.stripe_invoice_id, "stripe_invoice_id")
        _optional_text(self.stripe_subscription_id, "stripe_subscription_id")
        _optional_text(self.catalog_version, "catalog_version")
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

GENESIS_HASH: Final[str] = "0" * 64
_HEX = frozenset("0123456789abcdef")


def _canonical_value(value: object) -> object:
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError("booleans have no place in a ledger record")
    if isinstance(value, str):
        return str(value)  # StrEnum members become their plain value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, datetime):
        moment = require_utc(value).replace(tzinfo=None)
        return moment.isoformat(timespec="microseconds") + "Z"
    if isinstance(value, list | tuple):
        return [_canonical_value(item) for item in value]
    # Floats and Decimals are refused: money is integer minor units, and floats don't round-trip.
    raise TypeError(f"cannot canonicalize {type(value).__name__} value {value!r}")


def canonical_bytes(entry: LedgerEntryDraft | Mapping[str, object]) -> bytes:
    """Deterministic JSON of a ledger record: sorted keys, no whitespace, ASCII only.

    Accepts a draft or a stored row as a mapping with exactly RECORD_FIELDS as keys, so a row
    can be verified as stored even when its values would no longer pass the draft's checks.
    Datetimes are UTC ISO-8601 with microseconds and 'Z'; ints stay ints; None becomes null.
    """
    record = entry.to_record() if isinstance(entry, LedgerEntryDraft) else dict(entry)
    if set(record) != RECORD_FIELDS:
        missing = sorted(RECORD_FIELDS - set(record))
        extra = sorted(set(record) - RECORD_FIELDS)
        raise ValueError(f"ledger record fields differ: missing {missing}, unexpected {extra}")
    payload = {key: _canonical_value(value) for key, value in record.items()}
    return json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def _require_hash(value: str, what: str) -> str:
    if not isinstance(value, str) or len(value) != 64 or not set(value) <= _HEX:
        raise ValueError(f"{what} must be 64 lower-case hex characters")
    return value


def chain_hash(prev_hash: str | None, entry: LedgerEntryDraft | Mapping[str, object]) -> str:
    """sha256 hex over the previous row's hash (64 zeros for the first row) + canonical bytes."""
    prev = GENESIS_HASH if prev_hash is None else _require_hash(prev_hash, "prev_hash")
    return hashlib.sha256(prev.encode("ascii") + canonical_bytes(entry)).hexdigest()


def verify_chain(
    rows: Iterable[tuple[LedgerEntryDraft | Mapping[str, object], str]],
    *,
    prev_hash: str | None = None,
) -> int | None:
    """The index of the first row whose stored hash does not match, or None if all match.

    Rows come in ledger (append) order. `prev_hash` resumes from a verified checkpoint instead
    of the genesis row. A row that cannot even be canonicalized counts as a mismatch.
    """
    prev = prev_hash
    for index, (entry, stored_hash) in enumerate(rows):
        try:
            expected = chain_hash(prev, entry)
        except (TypeError, ValueError):
            return index
        if expected != stored_hash:
            return index
        prev = stored_hash
    return None


MovementLike = Movement | LedgerEntryDraft
AccountKey = tuple[str, str]  # (account_id, currency)

_RATIO_QUANTUM: Final = Decimal("0.0001")


def ratio(numerator: int, denominator: int) -> Decimal | None:
    """numerator / denominator to 4 places, half to even; None when the denominator is 0."""
    if denominator == 0:
        return None
    # A local context so a caller's global decimal settings can never change a report.
    with localcontext() as context:
        context.prec = 50
        quotient = Decimal(numerator) / Decimal(denominator)
        return quotient.quantize(_RATIO_QUANTUM, rounding=ROUND_HALF_EVEN)


def _engine_amounts(amounts: Mapping[Engine, int] | Mapping[str, int]) -> Mapping[Engine, int]:
    totals = dict.fromkeys(Engine, 0)
    for engine, amount in amounts.items():
        totals[Engine(engine)] += _require_non_negative(amount, f"expansion {engine}")
    return MappingProxyType(totals)


@dataclass(frozen=True, slots=True, kw_only=True)
class PeriodFlows:
    """The summed movements of one (period, currency): what SQL aggregates and reports consume.

    All amounts are non-negative minor units; contraction and churn are magnitudes. The cohort is
    the accounts with MRR > 0 at the period start; `cohort_capped_loss` is, summed over cohort
    accounts, min(account starting MRR, account contraction + churn).
    """

    period: Period
    currency: str
    starting_mrr: int
    new: int
    expansion_by_engine: Mapping[Engine, int]
    contraction: int
    churn: int
    reactivation: int
    cohort_expansion: int
    cohort_contraction: int
    cohort_churn: int
    cohort_capped_loss: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "currency", validate_currency(self.currency))
        object.__setattr__(self, "expansion_by_engine", _engine_amounts(self.expansion_by_engine))
        for name in (
            "starting_mrr",
            "new",
            "contraction",
            "churn",
            "reactivation",
            "cohort_expansion",
            "cohort_contraction",
            "cohort_churn",
            "cohort_capped_loss",
        ):
            _require_non_negative(getattr(self, name), name)
        if (
            self.cohort_expansion > sum(self.expansion_by_engine.values())
            or self.cohort_contraction > self.contraction
            or self.cohort_churn > self.churn
        ):
            raise ValueError("cohort amounts cannot exceed the period totals")
        if self.cohort_capped_loss > min(
            self.starting_mrr, self.cohort_contraction + self.cohort_churn
        ):
            raise ValueError("cohort_capped_loss exceeds starting MRR or cohort losses")


@dataclass(frozen=True, slots=True, kw_only=True)
class PeriodReport:
    """MRR movements and retention ratios for one (period, currency); never mixes currencies."""

    period: Period
    currency: str
    starting_mrr: int
    new: int
    expansion_by_engine: Mapping[Engine, int]
    contraction: int
    churn: int
    reactivation: int
    ending_mrr: int
    retained_mrr: int
    gross_retained_mrr: int
    nrr: Decimal | None
    grr: Decimal | None
    quick_ratio: Decimal | None
    expansion_share: Decimal | None

    @property
    def expansion(self) -> int:
        return sum(self.expansion_by_engine.values())


def report_from_flows(flows: PeriodFlows) -> PeriodReport:
    """Derive ending MRR and the ratios from one period's flows.

    - NRR = (start + cohort expansion - cohort contraction - cohort churn) / start; new and
      reactivation MRR never enter it, not even a cohort account's own return after churning,
      and a cohort account loses at most its starting MRR (cohort_share), so NRR >= 0.
    - GRR = (start - cohort capped loss) / start, so 0 <= GRR <= 1: an account cannot lose more
      of the starting MRR than it brought into the period.
    - quick ratio = (new + expansion + reactivation) / (contraction + churn), all accounts.
    - expansion share = expansion / (new + expansion + reactivation), all accounts: the part of
      the period's added MRR that came from existing customers growing.
    Ratios are None when their denominator is 0.
    """
    expansion = sum(flows.expansion_by_engine.values())
    gained = flows.new + expansion + flows.reactivation
    lost = flows.contraction + flows.churn
    retained = (
        flows.starting_mrr + flows.cohort_expansion - flows.cohort_contraction - flows.cohort_churn
    )
    gross_retained = flows.starting_mrr - flows.cohort_capped_loss
    return PeriodReport(
        period=flows.period,
        currency=flows.currency,
        starting_mrr=flows.starting_mrr,
        new=flows.new,
        expansion_by_engine=flows.expansion_by_engine,
        contraction=flows.contraction,
        churn=flows.churn,
        reactivation=flows.reactivation,
        ending_mrr=flows.starting_mrr + gained - lost,
        retained_mrr=retained,
        gross_retained_mrr=gross_retained,
        nrr=ratio(retained, flows.starting_mrr),
        grr=ratio(gross_retained, flows.starting_mrr),
        quick_ratio=ratio(gained, lost),
        expansion_share=ratio(expansion, gained),
    )


@dataclass(slots=True)
class _Tally:
    starting_mrr: int = 0
    new: int = 0
    expansion: dict[Engine, int] = field(default_factory=lambda: dict.fromkeys(Engine, 0))
    contraction: int = 0
    churn: int = 0
    reactivation: int = 0
    cohort_expansion: int = 0
    cohort_contraction: int = 0
    cohort_churn: int = 0
    cohort_capped_loss: int = 0

    def freeze(self, period: Period, currency: str) -> PeriodFlows:
        return PeriodFlows(
            period=period,
            currency=currency,
            starting_mrr=self.starting_mrr,
            new=self.new,
            expansion_by_engine=self.expansion,
            contraction=self.contraction,
            churn=self.churn,
            reactivation=self.reactivation,
            cohort_expansion=self.cohort_expansion,
            cohort_contraction=self.cohort_contraction,
            cohort_churn=self.cohort_churn,
            cohort_capped_loss=self.cohort_capped_loss,
        )


def _opening_balances(starting_mrr: Mapping[AccountKey, int]) -> dict[AccountKey, int]:
    balances: dict[AccountKey, int] = {}
    for (account_id, currency), mrr in starting_mrr.items():
        key = (_require_text(account_id, "account_id"), validate_currency(currency))
        if key in balances:
            raise ValueError(f"starting MRR given twice for {key}")
        if _require_non_negative(mrr, f"starting MRR of {key}"):
            balances[key] = mrr
    return balances


def _time_ordered(movements: Iterable[MovementLike]) -> list[MovementLike]:
    # sorted() is stable: movements at the same instant keep the order given (ledger order).
    return sorted(movements, key=lambda movement: movement.occurred_at)


def _roll_period(
    movements: Sequence[MovementLike], opening: Mapping[AccountKey, int], period: Period
) -> tuple[list[PeriodFlows], dict[AccountKey, int]]:
    tallies: dict[str, _Tally] = {}
    for (_, currency), mrr in opening.items():
        tallies.setdefault(currency, _Tally()).starting_mrr += mrr
    by_account: dict[AccountKey, list[MovementLike]] = {}
    for movement in movements:
        if not period.contains(movement.occurred_at):
            raise ValueError(f"movement at {movement.occurred_at} is outside {period}")
        by_account.setdefault((movement.account_id, movement.currency), []).append(movement)

    closing = dict(opening)
    for key, account_movements in by_account.items():
        tally = tallies.setdefault(key[1], _Tally())
        start = opening.get(key, 0)
        current = start
        losses = net = 0
        for index, movement in enumerate(account_movements):
            # A gap means a missing or misordered ledger row; any report built on it would lie.
            if movement.mrr_before != current:
                raise ValueError(
                    f"{key}: movement starts at {movement.mrr_before} but MRR was {current}"
                )
            kind = movement.kind
            amount = abs(movement.delta)
            cohort, capped = cohort_share(
                movement.delta, kind=kind, opening=start, loss_before=losses, net_before=net
            )
            tally.cohort_capped_loss += capped
            if kind is MovementKind.NEW:
                if index > 0:
                    raise ValueError(f"{key}: a return after churn is a reactivation, not new")
                tally.new += amount
            elif kind is MovementKind.REACTIVATION:
                tally.reactivation += amount
            elif kind is MovementKind.EXPANSION:
                assert movement.engine is not None  # guaranteed by the movement's own checks
                tally.expansion[movement.engine] += amount
                tally.cohort_expansion += cohort
            elif kind is MovementKind.CONTRACTION:
                tally.contraction += amount
                tally.cohort_contraction -= cohort
            else:
                tally.churn += amount
                tally.cohort_churn -= cohort
            if movement.delta < 0:
                losses += amount
            if counts_for_cohort(kind):
                net += movement.delta
            current = movement.mrr_after
        if current:
            closing[key] = current
        else:
            closing.pop(key, None)

    flows = [tallies[currency].freeze(period, currency) for currency in sorted(tallies)]
    return flows, closing


def period_flows(
    movements: Iterable[MovementLike],
    starting_mrr: Mapping[AccountKey, int],
    period: Period,
) -> list[PeriodFlows]:
    """Sum one period's movements into flows, one per currency, sorted by currency.

    `starting_mrr` maps (account_id, currency) to the MRR the account had at the period start
    (its last mrr_after before the period) and must include accounts without movements, since
    they are part of the NRR base. Every movement must fall inside the period, and each
    account's movements must chain (mrr_before equals the previous mrr_after), else ValueError.
    Movements are taken in occurred_at order; ties keep the given (ledger) order.
    """
    flows, _ = _roll_period(_time_ordered(movements), _opening_balances(starting_mrr), period)
    return flows


def period_reports(
    movements: Iterable[MovementLike],
    starting_mrr: Mapping[AccountKey, int],
    period: Period,
) -> list[PeriodReport]:
    """The report of one period per currency; see period_flows for the inputs."""
    return [report_from_flows(flows) for flows in period_flows(movements, starting_mrr, period)]


def rollforward_reports(
    movements: Iterable[MovementLike],
    opening_mrr: Mapping[AccountKey, int],
    periods: Sequence[Period],
) -> list[PeriodReport]:
    """Reports for consecutive periods, each period starting from the previous one's end.

    `opening_mrr` is the MRR per (account, currency) at the first period's start; movements must
    fall inside the periods, which must be contiguous. Sorted by period, then currency.
    """
    if not periods:
        return []
    for earlier, later in itertools.pairwise(periods):
        if earlier.end != later.start:
            raise ValueError("periods must be contiguous")
    starts = [period.start for period in periods]
    buckets: list[list[MovementLike]] = [[] for _ in periods]
    for movement in _time_ordered(movements):
        index = bisect.bisect_right(starts, movement.occurred_at) - 1
        if index < 0 or movement.occurred_at >= periods[-1].end:
            raise ValueError(f"movement at {movement.occurred_at} is outside the periods")
        buckets[index].append(movement)

    reports: list[PeriodReport] = []
    balances = _opening_balances(opening_mrr)
    for period, bucket in zip(periods, buckets, strict=True):
        flows, balances = _roll_period(bucket, balances, period)
        reports.extend(report_from_flows(item) for item in flows)
    return reports


def month_index(moment: datetime) -> int:
    """Months since year 0 of a UTC moment: the reports' month bucket (the SQL has a twin)."""
    moment = require_utc(moment, "moment")
    return moment.year * 12 + moment.month - 1


def month_and_quarter_start(moment: datetime) -> tuple[datetime, datetime]:
    """The UTC calendar month and quarter a moment falls in, by their first instant."""
    moment = require_utc(moment, "moment")
    quarter_month = (moment.month - 1) // 3 * 3 + 1
    return (
        datetime(moment.year, moment.month, 1, tzinfo=UTC),
        datetime(moment.year, quarter_month, 1, tzinfo=UTC),
    )


def month_start(index: int) -> datetime:
    """The first instant of the month with this month_index."""
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def months_per_period(granularity: Granularity) -> int:
    return 1 if Granularity(granularity) is Granularity.MONTH else 3


@dataclass(frozen=True, slots=True)
class ReportSplit:
    """How a report's [start, end) is read: whole periods from a monthly rollup, and the
    periods the range cuts from the entries themselves.

    `whole` starts on a period boundary and ends on a month boundary, so every period in it is
    either whole or cut at a month end, which monthly sums can answer. `head` is the cut first
    period, `tail` the last period when `end` falls inside a month; each lies in one period.
    """

    head: Period | None
    whole: Period | None
    tail: Period | None


def split_report_range(start: datetime, end: datetime, granularity: Granularity) -> ReportSplit:
    start, end = require_utc(start, "start"), require_utc(end, "end")
    if end <= start:
        raise ValueError("end must be after start")
    step = months_per_period(granularity)

    def period_start(moment: datetime) -> datetime:
        return month_start(month_index(moment) // step * step)

    first = period_start(start)
    inner_start = start if start == first else add_months(first, step)
    if end <= inner_start:  # the range lies inside one period
        return ReportSplit(head=Period(start, end), whole=None, tail=None)
    # end > inner_start, a period start, so the period holding end starts at or after it
    inner_end = end if end == month_start(month_index(end)) else period_start(end)
    return ReportSplit(
        head=Period(start, inner_start) if start < inner_start else None,
        whole=Period(inner_start, inner_end) if inner_start < inner_end else None,
        tail=Period(inner_end, end) if inner_end < end else None,
    )


def cohort_share(
    delta: int, *, kind: MovementKind, opening: int, loss_before: int, net_before: int
) -> tuple[int, int]:
    """What one movement adds to its period's cohort sums: (cohort delta, capped loss).

    `opening` is the account's MRR (in the movement's currency) at the period start,
    `loss_before` the losses it booked earlier in the same period and `net_before` the sum of
    its earlier cohort movements there (expansion, contraction, churn: not new nor
    reactivation, whose MRR was not in the cohort). Only accounts paying at the period start are
    in the cohort, and a cohort account can lose at most its opening MRR, for NRR as for GRR:
    its cohort deltas add up to max(-opening, net), its capped losses to min(opening, losses),
    the same sums _roll_period makes per account. So NRR >= 0 and 0 <= GRR <= 1 for any history
    (churned, reactivated and churned again within one period loses the opening MRR once).
    """
    if _require_non_negative(opening, "opening") == 0:
        return 0, 0
    loss_before = _require_non_negative(loss_before, "loss_before")
    delta = _require_int(delta, "delta")
    loss = -delta if delta < 0 else 0
    capped_loss = min(opening, loss_before + loss) - min(opening, loss_before)
    if not counts_for_cohort(kind):
        return 0, capped_loss
    net_before = _require_int(net_before, "net_before")
    return max(-opening, net_before + delta) - max(-opening, net_before), capped_loss


def counts_for_cohort(kind: MovementKind) -> bool:
    """Whether a movement of this kind moves the cohort's MRR (new and reactivated MRR never
    enter NRR or GRR)."""
    return kind not in (MovementKind.NEW, MovementKind.REACTIVATION)


def period_buckets(start: datetime, end: datetime, granularity: Granularity) -> list[Period]:
    """Split [start, end) at UTC calendar month or quarter boundaries; ends may be partial."""
    start = require_utc(start, "start")
    end = require_utc(end, "end")
    if end <= start:
        raise ValueError("end must be after start")
    step = months_per_period(granularity)
    first_month = start.month if step == 1 else (start.month - 1) // 3 * 3 + 1
    anchor = datetime(start.year, first_month, 1, tzinfo=UTC)
    buckets: list[Period] = []
    cursor = start
    steps = 1
    while cursor < end:
        boundary = min(add_months(anchor, steps * step), end)
        buckets.append(Period(cursor, boundary))
        cursor = boundary
        steps += 1
    return buckets


def in_activation_window(days_since_activation: int | None, window_days: int) -> bool:
    """Whether a moment falls in the post-activation window [0, window_days) days.

    None (milestone not reached yet) is outside the window.
    """
    if _require_int(window_days, "window_days") < 1:
        raise ValueError("window_days must be at least 1")
    if days_since_activation is None:
        return False
    return 0 <= _require_int(days_since_activation, "days_since_activation") < window_days


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferImpression:
    """One offer served to an account (one page load), whether the customer saw it (the frontend
    reported it displayed) and whether it was accepted as an upgrade."""

    engine: Engine
    offer_id: str
    seen: bool = False
    accepted: bool = False
    days_since_activation: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "engine", Engine(self.engine))
        if not isinstance(self.accepted, bool) or not isinstance(self.seen, bool):
            raise TypeError("seen and accepted must be bools")


@dataclass(frozen=True, slots=True, kw_only=True)
class FunnelRow:
    """One engine, in or out of the window: offers served (every one the API returned, per page
    load), seen (distinct offers a customer saw), accepted (seen offers taken) and conversion
    (accepted / seen: of what customers saw, not of what the API sent)."""

    engine: Engine
    in_window: bool
    served: int
    seen: int
    accepted: int
    conversion: Decimal | None


def funnel_row(
    engine: Engine, *, in_window: bool, served: int, seen: int, accepted: int
) -> FunnelRow:
    """A funnel row from counts, e.g. straight from a SQL GROUP BY."""
    _require_non_negative(served, "served")
    _require_non_negative(seen, "seen")
    if _require_non_negative(accepted, "accepted") > seen:
        raise ValueError("accepted offers cannot exceed the offers seen")
    return FunnelRow(
        engine=Engine(engine),
        in_window=in_window,
        served=served,
        seen=seen,
        accepted=accepted,
        conversion=ratio(accepted, seen),
    )


def offer_funnel(impressions: Iterable[OfferImpression], *, window_days: int) -> list[FunnelRow]:
    """Conversion of the offers customers saw, per engine, in and out of the activation window.

    Served counts every impression; seen and accepted count distinct offers, so an offer served
    on ten page loads, seen and accepted counts 10 / 1 / 1. Every engine gets both rows, even
    empty ones, so dashboards have a stable shape; ordered by engine, inside-the-window first.
    """
    served = {(engine, inside): 0 for engine in Engine for inside in (True, False)}
    seen: dict[tuple[Engine, bool], set[str]] = {key: set() for key in served}
    accepted: dict[tuple[Engine, bool], set[str]] = {key: set() for key in served}
    for impression in impressions:
        key = (
            impression.engine,
            in_activation_window(impression.days_since_activation, window_days),
        )
        served[key] += 1
        if impression.seen:
            seen[key].add(impression.offer_id)
            if impression.accepted:
                accepted[key].add(impression.offer_id)
    return [
        funnel_row(
            engine,
            in_window=inside,
            served=count,
            seen=len(seen[(engine, inside)]),
            accepted=len(accepted[(engine, inside)]),
        )
        for (engine, inside), count in served.items()
    ]


def median_days_to_first_expansion(expansions: Iterable[tuple[str, int]]) -> Decimal | None:
    """Median over accounts of the days from activation to their first expansion.

    Takes (account_id, days_since_activation) for every expansion; only each account's earliest
    counts. An even count averages the two middle values (so .5 can appear); None if empty.
    """
    first: dict[str, int] = {}
    for account_id, days in expansions:
        _require_non_negative(days, "days_since_activation")
        if account_id not in first or days < first[account_id]:
            first[account_id] = days
    ordered = sorted(first.values())
    if not ordered:
        return None
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return Decimal(ordered[middle])
    return Decimal(ordered[middle - 1] + ordered[middle]) / 2
