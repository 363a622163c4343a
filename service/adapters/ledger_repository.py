"""The ledger's reads: entries page by page, plus the streaming and aggregate reads of finance."""

from __future__ import annotations

import selectors
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Numeric,
    Row,
    Select,
    String,
    case,
    cast,
    delete,
    distinct,
    extract,
    func,
    insert,
    literal,
    literal_column,
    select,
    text,
)
from sqlalchemy.orm import Session

from service.adapters.ledger_appends import APPEND_LOCK_KEY, COHORT_KINDS
from service.adapters.ledger_tables import (
    FIRST_EXPANSION_ROWS,
    LedgerEntryRow,
    LedgerMonthFlowRow,
)
from service.adapters.offer_tables import OfferImpressionRow, OfferViewRow

E = LedgerEntryRow
F = LedgerMonthFlowRow

# The ledger columns the hash covers, in the order verify reads them, keyed by record field.
CHAIN_COLUMNS: dict[str, Any] = {
    "idempotency_key": E.idempotency_key,
    "account_id": E.account_id,
    "kind": E.kind,
    "engine": E.engine,
    "mrr_before": E.mrr_before_minor,
    "mrr_after": E.mrr_after_minor,
    "delta": E.mrr_delta_minor,
    "currency": E.currency,
    "source": E.source,
    "offer_id": E.offer_id,
    "signal_ids": E.signal_ids,
    "motion": E.motion,
    "days_since_activation": E.days_since_activation,
    "occurred_at": E.occurred_at,
    "stripe_invoice_id": E.stripe_invoice_id,
    "stripe_subscription_id": E.stripe_subscription_id,
    "catalog_version": E.catalog_version,
}

# The raw columns an export reads, in export order; `signal_ids` comes as its stored JSON text so
# the Python and COPY paths print the same characters.
EXPORT_SOURCE: dict[str, Any] = {
    "id": E.id,
    "occurred_at": E.occurred_at,
    "recorded_at": E.recorded_at,
    "account_id": E.account_id,
    "kind": E.kind,
    "engine": E.engine,
    "currency": E.currency,
    "mrr_before_minor": E.mrr_before_minor,
    "mrr_after_minor": E.mrr_after_minor,
    "mrr_delta_minor": E.mrr_delta_minor,
    "source": E.source,
    "motion": E.motion,
    "offer_id": E.offer_id,
    "signal_ids": cast(E.signal_ids, String),
    "days_since_activation": E.days_since_activation,
    "stripe_invoice_id": E.stripe_invoice_id,
    "stripe_subscription_id": E.stripe_subscription_id,
    "catalog_version": E.catalog_version,
    "idempotency_key": E.idempotency_key,
    "prev_hash": E.prev_hash,
    "hash": E.hash,
}


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """A half-open [start, end) filter on occurred_at; either side may be open."""

    start: datetime | None = None
    end: datetime | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if self.start is not None:
            found.append(E.occurred_at >= self.start)
        if self.end is not None:
            found.append(E.occurred_at < self.end)
        return found


class LedgerRepository:
    """Reading entries (appends: ledger_appends.LedgerAppends)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def balances(self, account_ids: Collection[str]) -> dict[str, dict[str, int]]:
        """Each account's MRR per currency as the ledger has it (sum of deltas), zeros dropped;
        accounts without MRR are left out."""
        found: dict[str, dict[str, int]] = {}
        ids = sorted(account_ids)
        for start in range(0, len(ids), 2_000):  # SQLite binds at most 32,766 parameters
            rows = self.session.execute(
                select(E.account_id, E.currency, func.sum(E.mrr_delta_minor))
                .where(E.account_id.in_(ids[start : start + 2_000]))
                .group_by(E.account_id, E.currency)
            )
            for account_id, currency, total in rows:
                if total:
                    found.setdefault(account_id, {})[currency] = int(total)
        return found

    def page(
        self,
        conditions: Sequence[ColumnElement[bool]],
        *,
        after_id: int | None,
        limit: int,
    ) -> list[LedgerEntryRow]:
        """Up to `limit` entries in ledger order after `after_id` (keyset pagination)."""
        statement = select(E).where(*conditions)
        if after_id is not None:
            statement = statement.where(E.id > after_id)
        return list(self.session.scalars(statement.order_by(E.id).limit(limit)))


def chain_batches(
    connection: Connection, *, after_id: int, batch_size: int
) -> Iterator[Sequence[Row]]:
    """Every row's id, hashed fields, prev_hash and hash in ledger order, in keyset batches."""
    columns = [E.id, *CHAIN_COLUMNS.values(), E.prev_hash, E.hash]
    while True:
        rows = connection.execute(
            select(*columns).where(E.id > after_id).order_by(E.id).limit(batch_size)
        ).all()
        if rows:
            yield rows
        if len(rows) < batch_size:
            return
        after_id = rows[-1].id


def export_select(window: TimeWindow) -> Select[Any]:
    return select(*EXPORT_SOURCE.values()).where(*window.conditions()).order_by(E.id)


def export_batches(
    connection: Connection, window: TimeWindow, *, batch_size: int
) -> Iterator[Sequence[Row]]:
    """Export rows as plain tuples in batches, over a server-side cursor where there is one."""
    result = connection.execution_options(stream_results=True, yield_per=batch_size).execute(
        export_select(window)
    )
    yield from result.partitions()


def count_entries(connection: Connection, window: TimeWindow) -> int:
    return connection.scalar(select(func.count()).select_from(E).where(*window.conditions())) or 0


def _utc_text(column: Any) -> ColumnElement[str]:
    # ISO-8601 with microseconds and Z, as the ledger hashes it (domain.ledger.canonical_bytes).
    return func.to_char(func.timezone("UTC", column), literal('YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))


def copy_csv_statement(
    connection: Connection,
    window: TimeWindow,
    *,
    columns: Sequence[str],
    zero_decimal: frozenset[str],
) -> tuple[str, dict[str, Any]]:
    """PostgreSQL `COPY (SELECT …) TO STDOUT` producing `columns` with the header, as CSV.

    Each export column is either a raw ledger column (EXPORT_SOURCE), formatted by PostgreSQL the
    way the Python path formats it, or the decimal twin of a `*_minor` column (named without it).
    """
    expressions = []
    for name in columns:
        if name in ("occurred_at", "recorded_at"):
            expression = _utc_text(EXPORT_SOURCE[name])
        elif name in EXPORT_SOURCE:
            expression = EXPORT_SOURCE[name]
        else:
            expression = _decimal_sql(EXPORT_SOURCE[f"{name}_minor"], zero_decimal)
        expressions.append(expression.label(name))
    statement = select(*expressions).where(*window.conditions()).order_by(E.id)
    compiled = statement.compile(
        dialect=connection.dialect, compile_kwargs={"render_postcompile": True}
    )
    return f"COPY ({compiled}) TO STDOUT WITH (FORMAT csv, HEADER true)", dict(compiled.params)


def _decimal_sql(column: Any, zero_decimal: frozenset[str]) -> ColumnElement[Any]:
    # numeric * 0.01 has scale 2 exactly, so 0 prints as 0.00 as Decimal formatting does; left
    # numeric (no cast to text) because PostgreSQL prints it faster itself.
    scaled = column * literal_column("0.01")
    return case((E.currency.in_(sorted(zero_decimal)), cast(column, Numeric)), else_=scaled)


class CopyFailed(RuntimeError):
    """PostgreSQL ended a COPY with an error (the message is the server's)."""


def copy_csv(
    connection: Connection,
    statement: str,
    params: dict[str, Any],
    *,
    chunk_bytes: int,
    max_rows: int,
) -> Iterator[tuple[bytes, int]]:
    """The raw output of `COPY … TO STDOUT` in chunks of whole rows, each of about `chunk_bytes`
    and at most `max_rows`: (bytes, rows).

    Reads libpq's buffer directly (psycopg's public `pq` layer): every row PostgreSQL has sent
    is taken in one tight loop and the socket is waited on only when the buffer is empty.
    psycopg's Copy object costs a Python round of generator and wait calls per row, which was
    more CPU than PostgreSQL's own formatting of the row. The connection is discarded if the
    consumer stops early, so the pool never gets back a connection still in COPY.
    """
    driver_connection = connection.connection.driver_connection
    assert isinstance(driver_connection, psycopg.Connection)
    command = psycopg.ClientCursor(driver_connection).mogrify(statement, params)
    pgconn = driver_connection.pgconn
    finished = False
    with selectors.DefaultSelector() as selector:
        selector.register(pgconn.socket, selectors.EVENT_READ)
        try:
            pgconn.send_query(command.encode(driver_connection.info.encoding))
            if pgconn.flush():  # a non-blocking connection may not send it all at once
                selector.modify(pgconn.socket, selectors.EVENT_WRITE)
                while pgconn.flush():
                    selector.select()
                selector.modify(pgconn.socket, selectors.EVENT_READ)
            _await_copy_out(pgconn, selector)
            rows: list[memoryview] = []
            size = 0
            while True:
                nbytes, data = pgconn.get_copy_data(1)
                if nbytes > 0:
                    rows.append(data)
                    size += nbytes
                    if size >= chunk_bytes or len(rows) >= max_rows:
                        yield b"".join(rows), len(rows)
                        rows.clear()
                        size = 0
                elif nbytes == 0:  # nothing buffered: wait for the server
                    selector.select()
                    pgconn.consume_input()
                else:
                    break
            _finish_copy(pgconn, selector, failed=nbytes == -2)
            finished = True
            if rows:
                yield b"".join(rows), len(rows)
        finally:
            if not finished:
                connection.invalidate()


def _next_result(pgconn: Any, selector: selectors.BaseSelector) -> Any:
    while pgconn.is_busy():
        selector.select()
        pgconn.consume_input()
    return pgconn.get_result()


def _error(pgconn: Any, result: Any) -> CopyFailed:
    message = result.error_message if result is not None else pgconn.error_message
    return CopyFailed(bytes(message).decode(errors="replace").strip())


def _await_copy_out(pgconn: Any, selector: selectors.BaseSelector) -> None:
    result = _next_result(pgconn, selector)
    if result is None or result.status != psycopg.pq.ExecStatus.COPY_OUT:
        error = _error(pgconn, result)
        while _next_result(pgconn, selector) is not None:  # leave the connection idle
            pass
        raise error


def _finish_copy(pgconn: Any, selector: selectors.BaseSelector, *, failed: bool) -> None:
    """Read the COPY's final result (and the end of results); raise if it failed."""
    result = _next_result(pgconn, selector)
    while _next_result(pgconn, selector) is not None:
        pass
    if failed or result is None or result.status != psycopg.pq.ExecStatus.COMMAND_OK:
        raise _error(pgconn, result)


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
