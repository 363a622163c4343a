"""The reports' SQL: period flows from the entries or the monthly rollup, rebuilding the rollup,
the offer funnel's counts and days to first expansion."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Row,
    Select,
    case,
    cast,
    delete,
    distinct,
    extract,
    func,
    insert,
    literal,
    select,
    text,
)

from service.adapters.ledger_appends import APPEND_LOCK_KEY, COHORT_KINDS
from service.adapters.ledger_repository import TimeWindow
from service.adapters.ledger_tables import FIRST_EXPANSION_ROWS, LedgerEntryRow, LedgerMonthFlowRow
from service.adapters.offer_tables import OfferImpressionRow, OfferViewRow

E = LedgerEntryRow
F = LedgerMonthFlowRow


def _month_index(connection: Connection, column: Any) -> ColumnElement[int]:
    """Months since year 0 of a UTC timestamp; PostgreSQL converts from the session time zone."""
    moment = func.timezone("UTC", column) if connection.dialect.name == "postgresql" else column
    return cast(extract("year", moment), Integer) * 12 + cast(extract("month", moment), Integer) - 1


@dataclass(slots=True)
class PeriodAggregate:
    """The summed movements of one (bucket, currency); bucket -1 is everything before `start`.

    Amounts are magnitudes except `net`; cohort amounts count accounts paying at the bucket start.
    """

    bucket: int
    currency: str
    new: int = 0
    reactivation: int = 0
    expansion_by_engine: dict[str, int] = field(default_factory=dict)
    contraction: int = 0
    churn: int = 0
    net: int = 0
    cohort_expansion: int = 0
    cohort_contraction: int = 0
    cohort_churn: int = 0
    cohort_capped_loss: int = 0

    def merge(self, other: PeriodAggregate) -> None:
        """Add another account range's sums for the same (bucket, currency)."""
        self.new += other.new
        self.reactivation += other.reactivation
        for engine, amount in other.expansion_by_engine.items():
            self.expansion_by_engine[engine] = self.expansion_by_engine.get(engine, 0) + amount
        self.contraction += other.contraction
        self.churn += other.churn
        self.net += other.net
        self.cohort_expansion += other.cohort_expansion
        self.cohort_contraction += other.cohort_contraction
        self.cohort_churn += other.cohort_churn
        self.cohort_capped_loss += other.cohort_capped_loss

    def add(self, kind: str, engine: str | None, total: int, cohort: int, capped: int) -> None:
        self.net += total
        if kind == "new":
            self.new += total
        elif kind == "reactivation":
            self.reactivation += total
        elif kind == "expansion":
            engine = engine or "strategic"  # an expansion always has one (domain.ledger)
            self.expansion_by_engine[engine] = self.expansion_by_engine.get(engine, 0) + total
            self.cohort_expansion += cohort
        elif kind == "contraction":
            self.contraction -= total
            self.cohort_contraction -= cohort
            self.cohort_capped_loss += capped
        elif kind == "churn":
            self.churn -= total
            self.cohort_churn -= cohort
            self.cohort_capped_loss += capped


def _least(left: Any, right: Any) -> ColumnElement[Any]:
    return case((left < right, left), else_=right)


def _greatest(left: Any, right: Any) -> ColumnElement[Any]:
    return case((left > right, left), else_=right)


def tune_for_reports(connection: Connection) -> None:
    """Session settings for the report's few big aggregates (PostgreSQL; a no-op elsewhere)."""
    if connection.dialect.name == "postgresql":
        # JIT compiling these queries costs seconds and saves less than it costs.
        connection.execute(text("SET LOCAL jit = off"))


def _moves(connection: Connection, conditions: Sequence[ColumnElement[bool]]) -> Any:
    """The movements the report sums, with their loss and UTC month index."""
    return (
        select(
            E.account_id,
            E.currency,
            E.occurred_at,
            E.id,
            E.kind,
            E.engine,
            E.mrr_delta_minor.label("delta"),
            E.mrr_before_minor.label("before"),
            case((E.mrr_delta_minor < 0, -E.mrr_delta_minor), else_=0).label("loss"),
            case((E.kind.in_(COHORT_KINDS), E.mrr_delta_minor), else_=0).label("cohort_delta"),
            _month_index(connection, E.occurred_at).label("month"),
        )
        .where(*conditions)
        .subquery("moves")
    )


def _placed(moves: Any, bucket_months: Sequence[int]) -> Any:
    """Each movement with, per bucket size, its account's MRR at the bucket start (`opening_N`)
    and the account's losses in the bucket up to and including it (`loss_after_N`).

    A bucket's opening is the mrr_before of the account's first movement in it: by the chain
    rule that is its MRR at the bucket start, so no earlier rows are read. The index yields rows
    presorted by account and time, so PostgreSQL only sorts each account's few rows by bucket.
    """
    m = moves.c
    windows = []
    for months in bucket_months:
        frame = {
            "partition_by": (m.account_id, m.currency, m.month // months),
            "order_by": (m.occurred_at, m.id),
            "rows": (None, 0),
        }
        windows.append(func.first_value(m.before).over(**frame).label(f"opening_{months}"))
        windows.append(func.sum(m.loss).over(**frame).label(f"loss_after_{months}"))
        windows.append(func.sum(m.cohort_delta).over(**frame).label(f"net_after_{months}"))
    return select(
        m.month, m.currency, m.kind, m.engine, m.delta, m.loss, m.cohort_delta, *windows
    ).subquery("placed")


def _cohort_sums(placed: Any, months: int) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """Summed over a group: the cohort's deltas and its capped losses (domain.ledger.cohort_share
    in SQL), for buckets of `months` months. Each movement adds how far its running sum moves
    above -opening (which telescopes to max(-opening, net) per account: a cohort account loses
    at most its opening MRR) and how much of the opening its running loss uses up (which
    telescopes to min(opening, losses))."""
    p = placed.c
    opening, loss_after = p[f"opening_{months}"], p[f"loss_after_{months}"]
    net_after = p[f"net_after_{months}"]
    in_cohort = opening > 0
    floor = -opening
    cohort = _greatest(floor, net_after) - _greatest(floor, net_after - p.cohort_delta)
    cap_used = _least(opening, loss_after) - _least(opening, loss_after - p.loss)
    return func.sum(cohort).filter(in_cohort), func.sum(cap_used).filter(in_cohort, p.loss > 0)


def _collect(rows: Iterator[Row[Any]]) -> list[PeriodAggregate]:
    """(bucket, currency, kind, engine, total, cohort, capped) rows as PeriodAggregates."""
    found: dict[tuple[int, str], PeriodAggregate] = {}
    for row in rows:
        key = (int(row[0]), row[1])
        aggregate = found.setdefault(key, PeriodAggregate(key[0], key[1]))
        total, cohort, capped = (int(value or 0) for value in row[4:7])
        aggregate.add(row[2], row[3] or None, total, cohort, capped)
    return list(found.values())


def _net(currency: Any, total: Any) -> list[Any]:
    """The columns of a bucket -1 row: a net MRR per currency, before the report."""
    return [literal(-1), currency, literal("opening"), literal(""), total, literal(0), literal(0)]


def _flows_select(source: Any, bucket: Any, total: Any, cohort: Any, capped: Any) -> Select[Any]:
    """(bucket, currency, kind, engine, total, cohort, capped) rows, as _collect reads them,
    grouped from `source` (the entries placed in their buckets, or the monthly rollup)."""
    keys = (bucket, source.currency, source.kind, source.engine)
    return select(*keys, total, cohort, capped).group_by(*keys)


def entry_flows(
    connection: Connection, start: datetime, end: datetime, *, months_per_bucket: int
) -> list[PeriodAggregate]:
    """Movements in [start, end) summed per (bucket, currency, kind, engine) from the entries;
    any range, even one that cuts a month.

    A bucket is `month_index // months_per_bucket`. An account is in a bucket's cohort when its
    first movement there starts above 0: its MRR at the bucket start, or at `start` in a bucket
    that `start` cuts.
    """
    placed = _placed(
        _moves(connection, [E.occurred_at >= start, E.occurred_at < end]), [months_per_bucket]
    )
    p = placed.c
    flows = _flows_select(
        p, p.month // months_per_bucket, func.sum(p.delta), *_cohort_sums(placed, months_per_bucket)
    )
    return _collect(connection.execute(flows))


def entry_net(connection: Connection, window: TimeWindow) -> list[PeriodAggregate]:
    """Bucket -1 rows: the net MRR movement per currency of the entries in `window`."""
    statement = select(*_net(E.currency, func.sum(E.mrr_delta_minor)))
    statement = statement.where(*window.conditions()).group_by(E.currency)
    return _collect(connection.execute(statement))


# --- the monthly rollup -------------------------------------------------------------------------

_QUARTER = 3


def month_flow_aggregates(
    connection: Connection, start_month: int, end_month: int, *, months_per_bucket: int
) -> list[PeriodAggregate]:
    """The sums entry_flows makes, for the months [start_month, end_month), from the monthly
    rollup. start_month must start a bucket; end_month may cut one (a bucket cut at a month
    end is still answered exactly: the cohort is fixed at the bucket start)."""
    if months_per_bucket not in (1, _QUARTER) or start_month % months_per_bucket:
        raise ValueError("the rollup answers whole months and quarters from a bucket start")
    prefix = "month" if months_per_bucket == 1 else "quarter"
    flows = _flows_select(
        F,
        F.month // months_per_bucket,
        func.sum(F.total_minor),
        func.sum(getattr(F, f"{prefix}_cohort_minor")),
        func.sum(getattr(F, f"{prefix}_capped_loss_minor")),
    ).where(F.month >= start_month, F.month < end_month)
    return _collect(connection.execute(flows))


def month_flow_net(connection: Connection, end_month: int) -> list[PeriodAggregate]:
    """Bucket -1 rows: the net MRR per currency of every month before `end_month`."""
    statement = select(*_net(F.currency, func.sum(F.total_minor)))
    statement = statement.where(F.month < end_month).group_by(F.currency)
    return _collect(connection.execute(statement))


def month_flow_rows(connection: Connection) -> list[tuple[Any, ...]]:
    """Every rollup row in key order, for comparing the rollup with a rebuild."""
    columns = [column for column in F.__table__.columns]
    statement = select(*columns).order_by(F.month, F.currency, F.kind, F.engine)
    return [tuple(row) for row in connection.execute(statement)]


def rebuild_month_flows(connection: Connection) -> int:
    """Recompute the whole rollup from the entries in the caller's transaction; returns its rows.

    Takes the append lock first on PostgreSQL, so no entry is added (and rolled up) meanwhile.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(select(func.pg_advisory_xact_lock(APPEND_LOCK_KEY)))
    placed = _placed(_moves(connection, []), [1, _QUARTER])
    p = placed.c
    engine = func.coalesce(p.engine, "")
    rebuilt = select(
        p.month,
        p.currency,
        p.kind,
        engine,
        func.count(),
        func.sum(p.delta),
        *(func.coalesce(total, 0) for total in _cohort_sums(placed, 1)),
        *(func.coalesce(total, 0) for total in _cohort_sums(placed, _QUARTER)),
    ).group_by(p.month, p.currency, p.kind, engine)
    names = [
        "month",
        "currency",
        "kind",
        "engine",
        "entries",
        "total_minor",
        "month_cohort_minor",
        "month_capped_loss_minor",
        "quarter_cohort_minor",
        "quarter_capped_loss_minor",
    ]
    connection.execute(delete(F))
    connection.execute(insert(F).from_select(names, rebuilt))
    return connection.scalar(select(func.count()).select_from(F)) or 0


def funnel_counts(
    connection: Connection, start: datetime, end: datetime
) -> list[tuple[str, bool, int, int, int]]:
    """(engine, in window, served, seen, accepted) per engine and window.

    Served: offers the API returned in [start, end), one per page load. Seen: offers the
    frontend reported as displayed in [start, end), once per offer id, counted only where that
    offer was served to that account. Accepted: those seen offers a ledger entry carries, so
    accepted <= seen <= served's distinct offers.
    """
    i, v = OfferImpressionRow, OfferViewRow
    counts: dict[tuple[str, bool], list[int]] = {}
    served = (
        select(i.engine, i.in_activation_window, func.count())
        .where(i.shown_at >= start, i.shown_at < end)
        .group_by(i.engine, i.in_activation_window)
    )
    for engine, inside, count in connection.execute(served):
        counts.setdefault((engine, bool(inside)), [0, 0, 0])[0] = int(count)
    accepted = select(E.offer_id).where(E.offer_id.is_not(None)).distinct().subquery("accepted")
    seen = (
        select(
            i.engine,
            i.in_activation_window,
            func.count(distinct(v.offer_id)),
            func.count(distinct(case((accepted.c.offer_id.is_not(None), v.offer_id)))),
        )
        .select_from(v)
        .join(i, (i.offer_id == v.offer_id) & (i.account_id == v.account_id))
        .outerjoin(accepted, accepted.c.offer_id == v.offer_id)
        .where(v.seen_at >= start, v.seen_at < end)
        .group_by(i.engine, i.in_activation_window)
    )
    for engine, inside, seen_count, accepted_count in connection.execute(seen):
        bucket = counts.setdefault((engine, bool(inside)), [0, 0, 0])
        bucket[1], bucket[2] = int(seen_count), int(accepted_count)
    return [(engine, inside, *bucket) for (engine, inside), bucket in counts.items()]


def first_expansion_days(
    connection: Connection, start: datetime, end: datetime
) -> list[tuple[str, int]]:
    """(account, days since activation) of accounts whose first post-activation expansion is in
    [start, end)."""
    statement = (
        select(E.account_id, func.min(E.days_since_activation))
        .where(FIRST_EXPANSION_ROWS)  # the partial index's own predicate, so it is used
        .group_by(E.account_id)
        .having(func.min(E.occurred_at) >= start, func.min(E.occurred_at) < end)
    )
    return [(row[0], int(row[1])) for row in connection.execute(statement)]
