"""Usage ingest, usage against limits, and milestones: the writes that feed the signals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from service.adapters.orm import AccountRow
from service.adapters.usage_repository import UsageRepository, usage_account
from service.domain.catalog import Catalog
from service.domain.errors import ValidationFailed
from service.domain.thresholds import (
    Crossing,
    CrossingCandidate,
)
from service.domain.usage import (
    EARLIEST_EVENT,
    FUTURE_TOLERANCE,
    CounterChange,
    CounterKey,
    EventCheck,
    EventRejection,
    UsageAccount,
    UsageEvent,
    UsageSnapshot,
    fold_events,
    is_lifetime,
    periods_of,
)
from service.services.account_state import mark_changed
from service.services.accounts import get_account
from service.services.signals import counter_candidates, evaluate_account, record_crossings


class UnknownMilestone(ValidationFailed):
    code = "unknown_milestone"


class MilestoneInFuture(ValidationFailed):
    code = "timestamp_in_future"


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    duplicates: int
    rejected: tuple[EventRejection, ...]
    signals: tuple[Crossing, ...]


def ingest_usage(
    session: Session, catalog: Catalog, now: datetime, events: Sequence[UsageEvent]
) -> IngestResult:
    """Count a batch of usage events, idempotently per event id, in the caller's transaction.

    Events that break a rule are rejected one by one (index, field, code); the rest is applied
    together. A replayed event id, in this batch or any earlier one, is a duplicate: it changes
    nothing and is counted as such. Crossings the new totals reach are recorded as signals.
    """
    usage = UsageRepository(session)
    accounts = usage.accounts({event.account_id for event in events})
    check = EventCheck(catalog, accounts, now)
    rejected: list[EventRejection] = []
    accepted: list[UsageEvent] = []
    seen: set[str] = set()
    for event in events:
        rejection = check(event)
        if rejection is not None:
            rejected.append(rejection)
        elif event.event_id not in seen:
            seen.add(event.event_id)
            accepted.append(event)
    replayed_in_batch = len(events) - len(rejected) - len(accepted)
    if not accepted:
        return IngestResult(0, replayed_in_batch, tuple(rejected), ())

    periods = periods_of(catalog, accepted, {a: accounts[a].cycle for a in accounts})
    event_rows = sorted(
        (
            event.event_id,
            event.account_id,
            event.feature,
            event.action.value,
            event.quantity,
            event.timestamp,
            period.start,
            now,
        )
        for event, period in zip(accepted, periods, strict=True)
    )
    # Replays are the exception: fold every event, and fold again only if some were known.
    changes = fold_events(accepted, periods)
    keys = sorted(changes)
    counted = usage.count_events(event_rows, _change_rows(changes, keys, now))
    totals = counted.totals
    if totals is None:
        fresh = [
            (e, p) for e, p in zip(accepted, periods, strict=True) if e.event_id in counted.new_ids
        ]
        changes = fold_events([e for e, _ in fresh], [p for _, p in fresh])
        keys = sorted(changes)
        totals = usage.apply_counter_changes(_change_rows(changes, keys, now))
    candidates = _candidates(catalog, accounts, changes, dict(zip(keys, totals, strict=True)), now)
    crossings = record_crossings(session, catalog, candidates, now)
    for account_id in {account_id for account_id, _, _ in keys}:
        mark_changed(session, account_id)  # their offers change: drop them from the offer cache
    return IngestResult(
        accepted=len(counted.new_ids),
        duplicates=replayed_in_batch + len(accepted) - len(counted.new_ids),
        rejected=tuple(rejected),
        signals=tuple(crossings),
    )


def _change_rows(
    changes: dict[CounterKey, CounterChange], keys: Sequence[CounterKey], now: datetime
) -> list[tuple[object, ...]]:
    """Counter changes as repository rows, in key order (a stable lock order)."""
    rows = []
    for key in keys:
        change = changes[key]
        period_end = None if is_lifetime(change.period) else change.period.end
        rows.append((*key, period_end, change.delta, change.reading, change.reading_at, now))
    return rows


def _candidates(
    catalog: Catalog,
    accounts: dict[str, UsageAccount],
    changes: dict[CounterKey, CounterChange],
    totals: dict[CounterKey, int],
    now: datetime,
) -> list[CrossingCandidate]:
    """Crossings the touched counters reach, measured against the accounts' current limits."""
    counters = []
    for key, used in totals.items():
        account_id, feature, _ = key
        period = changes[key].period
        counters.append(
            (accounts[account_id], feature, None if is_lifetime(period) else period, used)
        )
    return counter_candidates(catalog, counters, now)


def usage_snapshot(
    session: Session, catalog: Catalog, account: AccountRow, now: datetime
) -> UsageSnapshot:
    """Usage against limits (add-on grants applied) of every feature and seats, at `now`."""
    state = usage_account(account)
    return UsageRepository(session).snapshots(catalog, [state], now)[state.account_id]


@dataclass(frozen=True, slots=True)
class MilestoneInput:
    name: str
    timestamp: datetime | None = None  # now when omitted


@dataclass(frozen=True, slots=True)
class MilestoneOutcome:
    name: str
    reached_at: datetime
    duplicate: bool


@dataclass(frozen=True, slots=True)
class MilestoneResult:
    milestones: tuple[MilestoneOutcome, ...]
    signals: tuple[Crossing, ...]


def record_milestones(
    session: Session,
    catalog: Catalog,
    now: datetime,
    account_id: str,
    milestones: Sequence[MilestoneInput],
) -> MilestoneResult:
    """Record named milestones; the first timestamp of a name is kept, later ones are duplicates.

    Only the catalog's activation milestone and value workflows are accepted: a name nothing
    reads is a typo upstream, better refused than silently stored.
    """
    known = {catalog.signals.activation_milestone, *catalog.signals.value_workflows}
    for index, milestone in enumerate(milestones):
        if milestone.name not in known:
            raise UnknownMilestone(
                f"unknown milestone '{milestone.name}'; the catalog names: "
                + ", ".join(sorted(known)),
                field=f"milestones[{index}].name",
            )
        if milestone.timestamp is not None and milestone.timestamp > now + FUTURE_TOLERANCE:
            raise MilestoneInFuture(
                "more than 5 minutes ahead of the service clock",
                field=f"milestones[{index}].timestamp",
            )
        if milestone.timestamp is not None and milestone.timestamp < EARLIEST_EVENT:
            raise ValidationFailed(
                f"before {EARLIEST_EVENT.date().isoformat()}",
                field=f"milestones[{index}].timestamp",
                code="timestamp_out_of_range",
            )
    row = get_account(session, account_id)
    usage = UsageRepository(session)
    first: dict[str, datetime] = {}
    for milestone in milestones:
        # Within one request too, the earliest report of a name is the one that counts.
        reached = milestone.timestamp or now
        first[milestone.name] = min(first.get(milestone.name, reached), reached)
    inserted = usage.insert_milestones(
        [
            {"account_id": account_id, "name": name, "reached_at": at, "recorded_at": now}
            for name, at in sorted(first.items())
        ]
    )
    # A new milestone moves readiness, which signals carry: re-evaluate the account with it.
    crossings = evaluate_account(session, catalog, row, now) if inserted else []
    if inserted:
        mark_changed(session, account_id)  # readiness moved: its offers may too
    stored = usage.milestones([account_id]).get(account_id, {})
    outcomes = []
    for milestone in milestones:
        new = milestone.name in inserted
        inserted.discard(milestone.name)  # a name repeated in one request is new only once
        outcomes.append(MilestoneOutcome(milestone.name, stored[milestone.name], not new))
    return MilestoneResult(tuple(outcomes), tuple(crossings))
