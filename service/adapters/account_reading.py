"""One account as the read path needs it, in one statement: its row with its current counters,
billed lines, most recent crossings and milestones (the offer cache's miss)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
from sqlalchemy import ColumnElement, Connection, Select, Text, bindparam, cast, func, or_, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.engine import Dialect

from service.adapters.billing_tables import SubscriptionItemRow
from service.adapters.offer_tables import OfferPageRow
from service.adapters.orm import AccountRow, UTCDateTime
from service.adapters.usage_tables import CrossingRow, MilestoneRow, UsageCounterRow
from service.domain.thresholds import Crossing

_ACCOUNT_COLUMNS = (
    "id",
    "version",
    "status",
    "currency",
    "tier",
    "interval",
    "seats",
    "addons",
    "current_period_start",
    "current_period_end",
    "billing_customer_id",
    "billing_subscription_id",
    "billing_frozen_time",
    "catalog_version",
    "limits_version",
)


class AccountRecord(NamedTuple):
    """An account's row as the read path needs it; the attributes are named as AccountRow's."""

    id: str
    version: int
    status: str
    currency: str
    tier: str
    interval: str
    seats: int
    addons: dict[str, int]
    current_period_start: datetime
    current_period_end: datetime
    billing_customer_id: str | None
    billing_subscription_id: str | None
    billing_frozen_time: datetime | None
    catalog_version: str
    limits_version: str


class StoredLine(NamedTuple):
    """A subscription line as stored (the attributes are named as SubscriptionItemRow's)."""

    key: str
    description: str
    unit_amount_minor: int
    currency: str
    quantity: int
    billed_minor: int
    billed_from: datetime


class AccountReading(NamedTuple):
    """What one statement read of an account (see `read_account`)."""

    account: AccountRecord
    # (feature, period start) -> used, for the counters whose period starts at one of the
    # `starts` given or at the account's current period start.
    counters: dict[tuple[str, datetime], int]
    lines: list[StoredLine]  # its subscription lines, by key
    crossings: list[Crossing]  # its most recent ones, newest first (then by threshold key)
    milestones: dict[str, datetime]  # reached, by name
    # Its stamp in the offers read model at the same snapshot (None: no row yet); see
    # adapters.offer_pages.
    page_stamp: int | None


def read_account(
    connection: Connection,
    account_id: str,
    counter_starts: Collection[datetime],
    crossings_limit: int,
) -> AccountReading | None:
    """The account and what hangs off it, in one round trip; None for an unknown account.

    Counters are those of `counter_starts` and of the account's current billing period start
    (the caller checks that these cover every start it needs: the period start it computes
    may differ once the period is over)."""
    dialect = connection.dialect
    statement = _statement(dialect, len(counter_starts))
    parameters: dict[str, Any] = {"id": account_id, "crossings_limit": crossings_limit}
    for i, start in enumerate(sorted(counter_starts)):
        parameters[f"start_{i}"] = start
    row = connection.execute(statement, parameters).one_or_none()
    if row is None:
        return None
    account = AccountRecord(*row[: len(_ACCOUNT_COLUMNS)])
    counters_json, lines_json, crossings_json, milestones_json, page_stamp = row[
        len(_ACCOUNT_COLUMNS) :
    ]
    time = _time_decoder(dialect)
    counters = {(feature, time(start)): used for feature, start, used in _rows(counters_json)}
    lines = sorted(
        (
            StoredLine(key, description, unit, currency, quantity, billed, time(billed_from))
            for key, description, unit, currency, quantity, billed, billed_from in _rows(lines_json)
        ),
        key=lambda line: line.key,
    )
    crossings = [_crossing(values, time) for values in _rows(crossings_json)]
    if dialect.name != "postgresql":
        # SQLite aggregates in no set order; its text order (BINARY) is Python's.
        crossings.sort(key=lambda c: c.threshold_key)
        crossings.sort(key=lambda c: c.recorded_at, reverse=True)
    milestones = {name: time(reached_at) for name, reached_at in _rows(milestones_json)}
    return AccountReading(account, counters, lines, crossings, milestones, page_stamp)


def _rows(text: str | None) -> list[list[Any]]:
    return orjson.loads(text) if text else []


_CROSSING_FIELDS = (
    "id",
    "account_id",
    "threshold_key",
    "feature",
    "level",
    "at_percent",
    "used",
    "limit_value",
    "period_start",
    "period_end",
    "recorded_at",
    "motion",
    "acv_minor",
    "currency",
    "readiness_score",
    "readiness_reasons",
)


def _crossing(values: list[Any], time: Callable[[str], datetime]) -> Crossing:
    (
        id_,
        account_id,
        threshold_key,
        feature,
        level,
        at_percent,
        used,
        limit,
        period_start,
        period_end,
        recorded_at,
        motion,
        acv_minor,
        currency,
        readiness_score,
        reasons,
    ) = values
    if isinstance(reasons, str):  # SQLite's JSON column is text inside the array
        reasons = orjson.loads(reasons)
    return Crossing(
        id=id_,
        account_id=account_id,
        threshold_key=threshold_key,
        feature=feature,
        level=level,
        at_percent=at_percent,
        used=used,
        limit=limit,
        period_start=time(period_start),
        period_end=time(period_end),
        recorded_at=time(recorded_at),
        motion=motion,
        acv_minor=acv_minor,
        currency=currency,
        readiness_score=readiness_score,
        reasons=tuple(reasons),
    )


def _time_decoder(dialect: Dialect) -> Callable[[str], datetime]:
    """A time inside the JSON arrays: PostgreSQL writes timestamptz in ISO 8601 with its
    offset, SQLite the naive UTC text the column stores (see orm.UTCDateTime)."""

    def decode(text: str) -> datetime:
        moment = datetime.fromisoformat(text)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

    return decode


_STATEMENTS: dict[tuple[str, int], Select[Any]] = {}


def _statement(dialect: Dialect, starts: int) -> Select[Any]:
    key = (dialect.name, starts)
    statement = _STATEMENTS.get(key)
    if statement is None:
        statement = _STATEMENTS[key] = _build(dialect.name == "postgresql", starts)
    return statement


def _build(postgres: bool, starts: int) -> Select[Any]:
    accounts = AccountRow.__table__
    counters = UsageCounterRow.__table__
    items = SubscriptionItemRow.__table__
    crossings = CrossingRow.__table__
    milestones = MilestoneRow.__table__
    pages = OfferPageRow.__table__

    def rows_of(
        *columns: ColumnElement[Any], order_by: Sequence[ColumnElement[Any]] = ()
    ) -> ColumnElement[Any]:
        """A JSON array of one array per row, as text (NULL when there is no row); in
        `order_by` order on PostgreSQL (SQLite has no ordered aggregate before 3.44)."""
        if postgres:
            row = func.json_build_array(*columns)
            return cast(
                func.json_agg(aggregate_order_by(row, *order_by) if order_by else row), Text
            )
        return func.json_group_array(func.json_array(*columns))

    time = UTCDateTime()
    counter_rows = (
        select(rows_of(counters.c.feature, counters.c.period_start, counters.c.used))
        .where(
            counters.c.account_id == accounts.c.id,
            or_(
                counters.c.period_start == accounts.c.current_period_start,
                *(
                    counters.c.period_start == bindparam(f"start_{i}", type_=time)
                    for i in range(starts)
                ),
            ),
        )
        .scalar_subquery()
    )
    line_rows = (
        select(
            rows_of(
                items.c.key,
                items.c.description,
                items.c.unit_amount_minor,
                items.c.currency,
                items.c.quantity,
                items.c.billed_minor,
                items.c.billed_from,
            )
        )
        .where(items.c.account_id == accounts.c.id)
        .scalar_subquery()
    )
    recent = (
        select(*(crossings.c[name] for name in _CROSSING_FIELDS))
        .where(crossings.c.account_id == accounts.c.id)
        .order_by(crossings.c.recorded_at.desc(), crossings.c.threshold_key)
        .limit(bindparam("crossings_limit"))
        .correlate(accounts)
        .subquery()
    )
    crossing_rows = select(
        rows_of(
            *(recent.c[name] for name in _CROSSING_FIELDS),
            order_by=(recent.c.recorded_at.desc(), recent.c.threshold_key),
        )
    )
    milestone_rows = (
        select(rows_of(milestones.c.name, milestones.c.reached_at))
        .where(milestones.c.account_id == accounts.c.id)
        .scalar_subquery()
    )
    page_stamp = select(pages.c.stamp).where(pages.c.account_id == accounts.c.id).scalar_subquery()
    return select(
        *(accounts.c[name] for name in _ACCOUNT_COLUMNS),
        counter_rows,
        line_rows,
        crossing_rows.scalar_subquery(),
        milestone_rows,
        page_stamp,
    ).where(accounts.c.id == bindparam("id"))
