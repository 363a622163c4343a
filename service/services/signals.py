"""Expansion signals: record threshold crossings once per period, summarize readiness, sweep."""

from __future__ import annotations

import json
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TypeGuard

from sqlalchemy.orm import Session, sessionmaker

from service.adapters.account_reading import AccountRecord
from service.adapters.db import transaction
from service.adapters.orm import AccountRow
from service.adapters.signal_repository import SignalRepository, crossing_of
from service.adapters.usage_repository import AccountColumns, UsageRepository, usage_account
from service.domain.catalog import SEATS_FEATURE, Catalog
from service.domain.errors import Conflict, ValidationFailed
from service.domain.periods import Period
from service.domain.thresholds import (
    Crossing,
    CrossingCandidate,
    Motion,
    Readiness,
    SignalSummary,
    candidates_for,
    is_crossed,
    motion_for,
    readiness,
    sales_request,
    summarize,
    thresholds_by_feature,
)
from service.domain.usage import (
    BillingCycle,
    FeatureUsage,
    FeatureUsageKind,
    LimitBook,
    UsageAccount,
    UsageSnapshot,
)
from service.services.account_state import account_mrr, mark_changed

SUMMARY_CROSSINGS = 100  # the most recent crossings a summary lists
# Accounts per sweep transaction: per-page queries cost about the same for 5,000 or 20,000.
SWEEP_PAGE = 10_000
# Pages swept at once on PostgreSQL: one computes while another waits on the database.
SWEEP_WORKERS = 2


def acv_minor(catalog: Catalog, row: AccountRow | AccountColumns | AccountRecord) -> int:
    """Annual contract value: MRR × 12, in minor units."""
    try:
        return account_mrr(catalog, row).minor * 12
    except KeyError:
        # The plan names a tier or add-on this catalog no longer sells: no list price to count.
        return 0


def motion_of(catalog: Catalog, row: AccountRow | AccountRecord) -> Motion:
    return motion_for(catalog, row.tier, acv_minor(catalog, row))


def record_crossings(
    session: Session,
    catalog: Catalog,
    candidates: Sequence[CrossingCandidate],
    now: datetime,
    book: LimitBook | None = None,
) -> list[Crossing]:
    """Record the crossings not recorded yet for their period and put them in the outbox.

    Already-recorded ones are filtered with one indexed read first, so that readiness and
    motion (a few more queries) are only computed for what is new; the insert itself is
    ON CONFLICT DO NOTHING, so a concurrent writer of the same crossing makes it a no-op.
    """
    if not candidates:
        return []
    signals = SignalRepository(session)
    recorded = signals.recorded_keys(
        {c.account_id for c in candidates}, {c.period.start for c in candidates}
    )
    fresh: dict[tuple[str, str, datetime], CrossingCandidate] = {}
    for candidate in candidates:
        key = (candidate.account_id, candidate.threshold_key, candidate.period.start)
        if key not in recorded:
            fresh.setdefault(key, candidate)
    if not fresh:
        return []
    rows = {row.id: row for row in signals.accounts_for_signals({k[0] for k in fresh})}
    readiness_by_account = _readiness(session, catalog, rows.values(), now, book)
    acv = _AcvBook(catalog)
    crossings: list[Crossing] = []
    for key in sorted(fresh):
        candidate = fresh[key]
        row = rows.get(candidate.account_id)
        if row is None:
            continue
        acv_now = acv.of(row)
        readiness_now = readiness_by_account[row.id]
        crossings.append(
            Crossing(
                id=str(uuid.uuid4()),
                account_id=candidate.account_id,
                threshold_key=candidate.threshold_key,
                feature=candidate.feature,
                level=candidate.level,
                at_percent=candidate.at_percent,
                used=candidate.used,
                limit=candidate.limit,
                period_start=candidate.period.start,
                period_end=candidate.period.end,
                recorded_at=now,
                motion=(candidate.motion or motion_for(catalog, row.tier, acv_now)).value,
                acv_minor=acv_now,
                currency=row.currency,
                readiness_score=readiness_now.score,
                reasons=readiness_now.reasons,
            )
        )
    inserted = signals.insert_crossings(
        [
            (
                c.id,
                c.account_id,
                c.threshold_key,
                c.feature,
                c.level,
                c.at_percent,
                c.used,
                c.limit,
                c.period_start,
                c.period_end,
                c.motion,
                c.acv_minor,
                c.currency,
                c.readiness_score,
                list(c.reasons),
                catalog.version,
                c.recorded_at,
            )
            for c in crossings
        ]
    )
    # The outbox rows went in with the crossings, in this same transaction.
    recorded = [c for c in crossings if c.id in inserted]
    for account_id in {c.account_id for c in recorded}:
        mark_changed(session, account_id)  # a new signal: its offers change (the sweep's too)
    return recorded


class _AcvBook:
    """ACV per plan: accounts on the same plan and status have the same list-price ACV."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._by_plan: dict[tuple[object, ...], int] = {}

    def of(self, row: AccountColumns) -> int:
        key = (
            row.catalog_version,
            row.tier,
            row.interval,
            row.seats,
            tuple(sorted(row.addons.items())),
            row.status,
        )
        found = self._by_plan.get(key)
        if found is None:
            found = self._by_plan[key] = acv_minor(self.catalog, row)
        return found


def _readiness(
    session: Session,
    catalog: Catalog,
    rows: Iterable[AccountColumns],
    now: datetime,
    book: LimitBook | None,
) -> dict[str, Readiness]:
    accounts = [usage_account(row) for row in rows]
    usage = UsageRepository(session)
    snapshots = usage.snapshots(catalog, accounts, now, book)
    milestones = usage.milestones([a.account_id for a in accounts])
    by_feature = thresholds_by_feature(catalog)
    return {
        a.account_id: readiness(
            catalog, snapshots[a.account_id], milestones.get(a.account_id, {}), now, by_feature
        )
        for a in accounts
    }


def candidates_of(
    catalog: Catalog, account: UsageAccount, snapshot: UsageSnapshot, now: datetime
) -> list[CrossingCandidate]:
    """The crossings an account's current usage shows."""
    return candidates_for(
        account.account_id,
        snapshot.features.values(),
        thresholds_by_feature(catalog),
        account.cycle.period_at(now),
    )


def evaluate_account(
    session: Session, catalog: Catalog, row: AccountRow, now: datetime
) -> list[Crossing]:
    """Re-evaluate one account's thresholds (after its plan or milestones changed)."""
    account = usage_account(row)
    snapshot = UsageRepository(session).snapshots(catalog, [account], now)[account.account_id]
    return record_crossings(session, catalog, candidates_of(catalog, account, snapshot, now), now)


def request_sales_contact(
    session: Session, catalog: Catalog, account: AccountRow, tier_key: str, now: datetime
) -> tuple[Crossing, bool]:
    """The customer asked to talk to sales about `tier_key`: a signal routed to sales, through the
    outbox like a crossing, once per account, tier and billing period. Returns it and whether it
    is new (a repeated request in the same period answers the first one)."""
    if tier_key not in catalog.tiers:
        raise ValidationFailed(f"unknown tier '{tier_key}'", field="tier", code="unknown_tier")
    candidate = sales_request(account.id, tier_key, usage_account(account).cycle.period_at(now))
    recorded = record_crossings(session, catalog, [candidate], now)
    if recorded:
        return recorded[0], True
    row = SignalRepository(session).crossing_at(
        account.id, candidate.threshold_key, candidate.period.start
    )
    if row is None:  # recorded by a concurrent request that has not committed yet
        raise Conflict("the same request is being recorded; retry", code="request_in_progress")
    return crossing_of(row), False


def signal_summary(
    session: Session,
    catalog: Catalog,
    account: AccountRow,
    now: datetime,
    snapshot: UsageSnapshot | None = None,
) -> SignalSummary:
    """Crossings, readiness and motion of one account: three indexed queries (two when its
    usage `snapshot` at `now` is given), no writes."""
    usage = UsageRepository(session)
    state = usage_account(account)
    if snapshot is None:
        snapshot = usage.snapshots(catalog, [state], now)[state.account_id]
    milestones = usage.milestones([state.account_id]).get(state.account_id, {})
    rows = SignalRepository(session).crossings_of(state.account_id, SUMMARY_CROSSINGS)
    return summary_of(catalog, account, snapshot, milestones, [crossing_of(r) for r in rows], now)


def summary_of(
    catalog: Catalog,
    account: AccountRow | AccountRecord,
    snapshot: UsageSnapshot,
    milestones: Mapping[str, datetime],
    crossings: Sequence[Crossing],
    now: datetime,
) -> SignalSummary:
    """`signal_summary` of what was read already: the account's most recent crossings (up to
    SUMMARY_CROSSINGS, newest first), its milestones and its usage snapshot at `now`."""
    return summarize(
        crossings, readiness(catalog, snapshot, milestones, now), motion_of(catalog, account)
    )


def counter_candidates(
    catalog: Catalog,
    counters: Iterable[tuple[UsageAccount, str, Period | None, int]],
    now: datetime,
    book: LimitBook | None = None,
) -> list[CrossingCandidate]:
    """Crossings that counters reach: (account, feature, counter period or None for lifetime,
    used), measured against the account's current limits. Counters of lifetime features
    signal once per billing period."""
    by_feature = thresholds_by_feature(catalog)
    book = book or LimitBook(catalog)
    candidates: list[CrossingCandidate] = []
    signal_periods: dict[BillingCycle, Period] = {}
    for account, feature, period, used in counters:
        thresholds = by_feature.get(feature)
        if thresholds is None:
            continue
        limit = book.limit(account, feature)
        # Most counters are below every threshold: rule them out before building anything.
        if not is_crossed(used, limit, thresholds[0].at_percent):
            continue
        spec = catalog.features.get(feature)
        kind = spec.kind.value if spec is not None else FeatureUsageKind.seats.value
        usage = FeatureUsage(feature, kind, used, limit, period)
        signal_period = signal_periods.get(account.cycle)
        if signal_period is None:
            signal_period = signal_periods[account.cycle] = account.cycle.period_at(now)
        candidates.extend(candidates_for(account.account_id, [usage], by_feature, signal_period))
    return candidates


@dataclass(frozen=True, slots=True)
class SweepBounds:
    """A page of the sweep: the accounts in (after_id, last_id], in id order."""

    after_id: str
    last_id: str
    accounts: int


@dataclass(frozen=True, slots=True)
class SweepPage:
    accounts: int
    crossings: int
    last_id: str | None


def sweep_page(
    session: Session,
    catalog: Catalog,
    now: datetime,
    bounds: SweepBounds,
    book: LimitBook | None = None,
) -> SweepPage:
    """Re-evaluate the accounts in (bounds.after_id, bounds.last_id] (in id order).

    Set-based, and the database does the comparing: one query finds the distinct (tier,
    add-ons) plans of the page, and one returns only the current counters that reach their
    plan's lowest threshold (an exact integer trigger computed here per plan and feature).
    Only those are evaluated in Python and recorded, idempotently.
    """
    book = book or LimitBook(catalog)
    signals = SignalRepository(session)
    after_id, last_id = bounds.after_id, bounds.last_id
    by_feature = thresholds_by_feature(catalog)
    lowest = {feature: ts[0].at_percent for feature, ts in by_feature.items()}
    triggers = []
    addon_sets: dict[str | None, dict[str, int]] = {}
    for version, tier, addons_json in signals.plans_between(after_id, last_id):
        addons = addon_sets[addons_json] = json.loads(addons_json) if addons_json else {}
        for feature, limit_value in book.limits(tier, addons, version).items():
            at_percent = lowest.get(feature)
            if at_percent is None or not _is_count(limit_value) or limit_value <= 0:
                continue
            # used * 100 >= at_percent * limit  <=>  used >= ceil(at_percent * limit / 100)
            at_least = -(-at_percent * limit_value // 100)
            triggers.append((tier, addons_json, feature, at_least, version))
    readings = signals.counters_reaching(
        after_id, last_id, now, triggers, lowest.get(SEATS_FEATURE)
    )
    # An account has several counters and most counters share a few periods: build each once.
    accounts: dict[str, UsageAccount] = {}
    periods: dict[tuple[datetime, datetime], Period] = {}
    counters = []
    for reading in readings:
        account = accounts.get(reading.account_id)
        if account is None:
            addons = addon_sets.get(reading.addons_json)
            if addons is None:
                addons = addon_sets[reading.addons_json] = json.loads(reading.addons_json or "{}")
            account = accounts[reading.account_id] = reading.account(addons)
        period = None
        if reading.period_end is not None:
            key = (reading.period_start, reading.period_end)
            period = periods.get(key)
            if period is None:
                period = periods[key] = Period(*key)
        counters.append((account, reading.feature, period, reading.used))
    candidates = counter_candidates(catalog, counters, now, book)
    recorded = record_crossings(session, catalog, candidates, now, book)
    return SweepPage(bounds.accounts, len(recorded), last_id)


def _is_count(limit: int | bool | None) -> TypeGuard[int]:
    return isinstance(limit, int) and not isinstance(limit, bool)


@dataclass(frozen=True, slots=True)
class SweepReport:
    accounts: int
    crossings: int


def sweep(
    factory: sessionmaker[Session],
    catalog: Catalog,
    now: datetime,
    *,
    batch_size: int = SWEEP_PAGE,
    on_page: Callable[[SweepPage], None] | None = None,
    workers: int | None = None,
) -> SweepReport:
    """Re-evaluate every account, one transaction per page; safe to re-run at any time.

    A job, not a request: it owns its transactions, so progress survives an interruption and
    a re-run records nothing twice (the crossings' unique key makes each page idempotent).
    Pages are disjoint ranges of accounts, so `workers` of them are swept at once: while one
    waits on the database, another computes. `on_page` sees them in order. By default
    SWEEP_WORKERS on PostgreSQL, one on SQLite (whose writers take turns anyway).
    """
    if workers is None:
        with factory() as session:
            workers = SWEEP_WORKERS if SignalRepository(session).locks_rows else 1
    book = LimitBook(catalog)
    accounts = crossings = 0
    in_flight: deque[Future[SweepPage]] = deque()

    def settle(page: SweepPage) -> None:
        nonlocal accounts, crossings
        accounts += page.accounts
        crossings += page.crossings
        if on_page is not None:
            on_page(page)

    def run(bounds: SweepBounds) -> SweepPage:
        with transaction(factory) as session:
            return sweep_page(session, catalog, now, bounds, book)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sweep") as pool:
        after = ""
        while True:
            with transaction(factory) as session:
                count, last_id = SignalRepository(session).page_bounds(after, batch_size)
            if last_id is None:
                break
            in_flight.append(pool.submit(run, SweepBounds(after, last_id, count)))
            after = last_id
            if len(in_flight) >= workers:
                settle(in_flight.popleft().result())
        while in_flight:
            settle(in_flight.popleft().result())
    return SweepReport(accounts, crossings)


def account_count(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return SignalRepository(session).account_count()
