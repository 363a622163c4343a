"""Usage counters: which period an event counts in, how a batch folds into counter changes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import NamedTuple

from service.domain.catalog import (
    SEATS_FEATURE,
    Catalog,
    FeatureKind,
    UnknownCatalogVersion,
    UsageReset,
)
from service.domain.periods import Period, billing_period_containing, calendar_month

# Lifetime counters (capacity features, active seats) have no period; the counter table keys
# every row by a period start, so they all share this one.
LIFETIME_START = datetime(1970, 1, 1, tzinfo=UTC)
LIFETIME = Period(LIFETIME_START, datetime.max.replace(tzinfo=UTC))
# Timestamps are the product's clock: a little skew is normal, an hour ahead is a bug upstream.
FUTURE_TOLERANCE = timedelta(minutes=5)
# Older than this is a broken clock (or a zero value), not a late event.
EARLIEST_EVENT = datetime(2000, 1, 1, tzinfo=UTC)
MAX_BATCH = 1000
MAX_QUANTITY = 1_000_000_000_000  # per event; keeps every counter far inside a signed 64-bit int


def as_utc(moment: datetime) -> datetime:
    """`moment` in datetime.UTC, converted once so that later arithmetic is cheap; a moment
    with no UTC equivalent (year 1 at +01:00) is returned as it is, for the rules to reject."""
    if moment.tzinfo is UTC:
        return moment
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return moment


class UsageAction(StrEnum):
    increment = "increment"  # add the quantity to the counter
    set = "set"  # the counter now reads the quantity (a gauge, e.g. active seats)


class FeatureUsageKind(StrEnum):
    capacity = "capacity"
    metered = "metered"
    boolean = "boolean"
    seats = "seats"


class BillingCycle(NamedTuple):
    """An account's current billing period and its length, to find the period of any moment.

    A NamedTuple rather than a frozen dataclass: ingest builds hundreds per batch, 5× cheaper.
    """

    start: datetime
    end: datetime
    interval_months: int

    def period_at(self, moment: datetime) -> Period:
        if self.start <= moment < self.end:
            return _period(self.start, self.end)
        # Count from the edge nearest the moment, so a custom current period (shorter than the
        # interval) never overlaps the periods around it.
        if moment >= self.end:
            return billing_period_containing(self.end, self.interval_months, moment)
        return billing_period_containing(self.start, self.interval_months, moment)


class FeatureUsage(NamedTuple):
    """One feature's usage against its limit (a NamedTuple: snapshots build one per feature)."""

    feature: str
    kind: str  # "capacity" | "metered" | "boolean" | "seats"
    used: int
    limit: int | bool | None  # None = unlimited
    period: Period | None  # None for lifetime/boolean

    @property
    def utilization_percent(self) -> int | None:
        """floor(used * 100 / limit) for a numeric limit above zero, else None."""
        if isinstance(self.limit, bool) or self.limit is None or self.limit <= 0:
            return None
        return self.used * 100 // self.limit


@dataclass(frozen=True, slots=True)
class UsageSnapshot:
    account_id: str
    features: dict[str, FeatureUsage]  # includes "seats": used=active seats, limit=purchased seats


def is_countable(catalog: Catalog, feature: str) -> bool:
    """Whether usage events may name this feature: numeric features and the reserved seats."""
    if feature == SEATS_FEATURE:
        return True
    spec = catalog.features.get(feature)
    return spec is not None and spec.kind is not FeatureKind.boolean


def usage_period(catalog: Catalog, feature: str, cycle: BillingCycle, moment: datetime) -> Period:
    """The counter period `moment` falls in; lifetime counters get one endless period."""
    spec = catalog.features.get(feature)
    if spec is None or spec.kind is not FeatureKind.metered:
        return LIFETIME
    if spec.reset is UsageReset.billing_period:
        return cycle.period_at(moment)
    return _month(moment)


@lru_cache(maxsize=4096)
def _period(start: datetime, end: datetime) -> Period:
    # Snapshots and signals ask for an account's current period once per feature.
    return Period(start, end)


@lru_cache(maxsize=256)
def _month(moment: datetime) -> Period:
    # Snapshots of many accounts at one `now` ask for the same month again and again.
    return calendar_month(moment)


def is_lifetime(period: Period) -> bool:
    return period.start == LIFETIME_START


def current_period_starts(catalog: Catalog, cycle: BillingCycle, now: datetime) -> set[datetime]:
    """The period starts of every counter that is current at `now` (for one account)."""
    starts = {LIFETIME_START}
    for key in catalog.features:
        if is_countable(catalog, key):
            starts.add(usage_period(catalog, key, cycle, now).start)
    return starts


class UsageAccount(NamedTuple):
    """What usage needs of an account: the inputs of its limits and its billing cycle."""

    account_id: str
    tier: str
    seats: int  # purchased
    addons: Mapping[str, int]
    cycle: BillingCycle
    limits_version: str = ""  # the catalog version its limits come from ("": the one at hand)


class LimitBook:
    """Effective limits per (catalog version, tier, add-ons), computed once per combination.

    An account on a tier (or with an add-on) that a newer catalog dropped gets no limits from
    it rather than an error: a sweep after a catalog change must not stop at such an account.
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._by_plan: dict[
            tuple[str, str, tuple[tuple[str, int], ...]], dict[str, int | bool | None]
        ] = {}

    def limits(
        self, tier: str, addons: Mapping[str, int], version: str = ""
    ) -> dict[str, int | bool | None]:
        key = (version, tier, tuple(sorted(addons.items())) if addons else ())
        found = self._by_plan.get(key)
        if found is None:
            found = self._by_plan[key] = self._compute(tier, addons, version)
        return found

    def limit(self, account: UsageAccount, feature: str) -> int | bool | None:
        if feature == SEATS_FEATURE:
            return account.seats
        return self.limits(account.tier, account.addons, account.limits_version).get(feature, 0)

    def _compute(
        self, tier: str, addons: Mapping[str, int], version: str
    ) -> dict[str, int | bool | None]:
        try:
            catalog = self.catalog.at_version(version)
        except UnknownCatalogVersion:
            return {}
        if tier not in catalog.tiers:
            return {}
        known = {key: quantity for key, quantity in addons.items() if key in catalog.addons}
        return {feature: catalog.limit(tier, feature, known) for feature in catalog.features}


def build_snapshot(
    catalog: Catalog,
    account: UsageAccount,
    counters: Mapping[tuple[str, datetime], int],
    now: datetime,
    book: LimitBook | None = None,
) -> UsageSnapshot:
    """Usage against limits for every catalog feature and seats, at `now`.

    `counters` maps (feature, period start) to the counted amount; a missing counter is zero.
    """
    limits = (book or LimitBook(catalog)).limits(
        account.tier, account.addons, account.limits_version
    )
    features: dict[str, FeatureUsage] = {}
    for key, spec in catalog.features.items():
        limit = limits.get(key, False if spec.kind is FeatureKind.boolean else 0)
        if spec.kind is FeatureKind.boolean:
            features[key] = FeatureUsage(key, FeatureUsageKind.boolean.value, 0, limit, None)
            continue
        period = usage_period(catalog, key, account.cycle, now)
        used = counters.get((key, period.start), 0)
        features[key] = FeatureUsage(
            key, spec.kind.value, used, limit, None if is_lifetime(period) else period
        )
    active_seats = counters.get((SEATS_FEATURE, LIFETIME_START), 0)
    features[SEATS_FEATURE] = FeatureUsage(
        SEATS_FEATURE, FeatureUsageKind.seats.value, active_seats, account.seats, None
    )
    return UsageSnapshot(account.account_id, features)


class UsageEvent(NamedTuple):
    """One validated-shape usage event; the index is its place in the batch, for errors.

    A NamedTuple rather than a frozen dataclass: ingest builds up to 1,000 per batch.
    """

    index: int
    event_id: str
    account_id: str
    feature: str
    quantity: int
    timestamp: datetime
    action: UsageAction


@dataclass(frozen=True, slots=True)
class EventRejection:
    index: int
    event_id: str
    field: str
    code: str
    message: str


def check_event(
    catalog: Catalog, event: UsageEvent, known_accounts: Mapping[str, object], now: datetime
) -> EventRejection | None:
    """Why this event cannot be counted, or None; the shape has been checked already."""

    def reject(field: str, code: str, message: str) -> EventRejection:
        return EventRejection(event.index, event.event_id, field, code, message)

    if event.account_id not in known_accounts:
        return reject("account_id", "unknown_account", f"account '{event.account_id}' not found")
    if not is_countable(catalog, event.feature):
        if event.feature in catalog.features:
            return reject(
                "feature", "feature_not_countable", f"'{event.feature}' is on/off: nothing to count"
            )
        return reject("feature", "unknown_feature", f"unknown feature '{event.feature}'")
    if event.quantity < 0:
        verb = "an increment" if event.action is UsageAction.increment else "a reading"
        return reject("quantity", "negative_quantity", f"{verb} must not be negative")
    if event.timestamp > now + FUTURE_TOLERANCE:
        return reject(
            "timestamp",
            "timestamp_in_future",
            f"more than {int(FUTURE_TOLERANCE.total_seconds() // 60)} minutes ahead of the "
            f"service clock ({now.isoformat()})",
        )
    if event.timestamp < EARLIEST_EVENT:
        return reject(
            "timestamp", "timestamp_out_of_range", f"before {EARLIEST_EVENT.date().isoformat()}"
        )
    return None


class EventCheck:
    """check_event for a whole batch: the common case (nothing wrong) in a few comparisons."""

    def __init__(
        self, catalog: Catalog, known_accounts: Mapping[str, object], now: datetime
    ) -> None:
        self.catalog = catalog
        self.known_accounts = known_accounts
        self.now = now
        self.latest = now + FUTURE_TOLERANCE
        self.countable = frozenset(
            key for key in (*catalog.features, SEATS_FEATURE) if is_countable(catalog, key)
        )

    def __call__(self, event: UsageEvent) -> EventRejection | None:
        if (
            event.account_id in self.known_accounts
            and event.feature in self.countable
            and event.quantity >= 0
            and EARLIEST_EVENT <= event.timestamp <= self.latest
        ):
            return None
        return check_event(self.catalog, event, self.known_accounts, self.now)


CounterKey = tuple[str, str, datetime]  # account id, feature, period start


@dataclass(slots=True)
class CounterChange:
    """What one batch does to one counter.

    `delta` is every increment; when the batch holds a reading (`set`), `reading` is the latest
    one plus the increments timestamped after it, and replaces the counter if no later reading
    has been applied already.
    """

    period: Period
    delta: int = 0
    reading: int | None = None
    reading_at: datetime | None = None


def periods_of(
    catalog: Catalog, events: Sequence[UsageEvent], cycles: Mapping[str, BillingCycle]
) -> list[Period]:
    """The counter period of each event, in order."""
    # Most of a batch falls in one month and in each account's current billing period: build
    # each of those periods once.
    months: dict[tuple[int, int], Period] = {}
    current: dict[str, Period] = {}
    resets = {
        key: (spec.reset or UsageReset.calendar_month)
        for key, spec in catalog.features.items()
        if spec.kind is FeatureKind.metered
    }
    periods = []
    for event in events:
        reset = resets.get(event.feature)
        moment = event.timestamp
        if reset is None:
            periods.append(LIFETIME)
        elif reset is UsageReset.billing_period:
            cycle = cycles[event.account_id]
            if cycle.start <= moment < cycle.end:
                period = current.get(event.account_id)
                if period is None:
                    period = current[event.account_id] = Period(cycle.start, cycle.end)
            else:
                period = cycle.period_at(moment)
            periods.append(period)
        else:
            month_key = (moment.year, moment.month)
            period = months.get(month_key)
            if period is None:
                period = months[month_key] = calendar_month(moment)
            periods.append(period)
    return periods


def fold_events(
    events: Sequence[UsageEvent], periods: Sequence[Period]
) -> dict[CounterKey, CounterChange]:
    """Fold accepted events (with their periods) into one change per counter."""
    changes: dict[CounterKey, CounterChange] = {}
    with_readings: set[CounterKey] = set()
    for event, period in zip(events, periods, strict=True):
        key = (event.account_id, event.feature, period.start)
        change = changes.get(key)
        if change is None:
            change = changes[key] = CounterChange(period)
        if event.action is UsageAction.increment:
            change.delta += event.quantity
        else:
            with_readings.add(key)
    if with_readings:
        timelines: dict[CounterKey, list[UsageEvent]] = {}
        for event, period in zip(events, periods, strict=True):
            key = (event.account_id, event.feature, period.start)
            if key in with_readings:
                timelines.setdefault(key, []).append(event)
        for key, timeline in timelines.items():
            _fold_timeline(changes[key], timeline)
    return changes


def _fold_timeline(change: CounterChange, timeline: list[UsageEvent]) -> None:
    # In time order (batch order breaks ties), a reading covers the increments before it.
    for event in sorted(timeline, key=lambda e: (e.timestamp, e.index)):
        if event.action is UsageAction.set:
            change.reading = event.quantity
            change.reading_at = event.timestamp
        elif change.reading is not None:
            change.reading += event.quantity
