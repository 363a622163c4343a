"""Report periods: UTC calendar months and quarters, their buckets, and how a report range
splits into whole periods and partial ends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from service.domain.periods import Period, add_months, require_utc


class Granularity(StrEnum):
    MONTH = "month"
    QUARTER = "quarter"


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
