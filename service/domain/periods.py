"""Calendar arithmetic for billing and usage periods, always in UTC."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime


def require_utc(moment: datetime, what: str = "timestamp") -> datetime:
    """Return `moment` converted to UTC; naive datetimes are refused, never guessed."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware")
    return moment.astimezone(UTC)


def add_months(anchor: datetime, months: int) -> datetime:
    """`anchor` moved by whole calendar months, the day clamped to the month's end.

    Stripe anchors a billing cycle this way: a cycle anchored on the 31st renews on Feb 28 (29)
    and then on Mar 31 again, so always count from the anchor, never from the previous renewal.
    """
    anchor = require_utc(anchor, "anchor")
    month_index = anchor.month - 1 + months
    year = anchor.year + month_index // 12
    month = month_index % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


@dataclass(frozen=True, slots=True)
class Period:
    """A half-open span of time [start, end)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", require_utc(self.start, "period start"))
        object.__setattr__(self, "end", require_utc(self.end, "period end"))
        if self.end <= self.start:
            raise ValueError("period end must be after its start")

    def contains(self, moment: datetime) -> bool:
        return self.start <= require_utc(moment) < self.end

    @property
    def seconds(self) -> int:
        return int((self.end - self.start).total_seconds())


def calendar_month(moment: datetime) -> Period:
    """The UTC calendar month containing `moment`."""
    moment = require_utc(moment)
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return Period(start, add_months(start, 1))


def billing_period_containing(anchor: datetime, interval_months: int, moment: datetime) -> Period:
    """The period of a cycle anchored at `anchor`, `interval_months` long, that holds `moment`."""
    anchor = require_utc(anchor, "anchor")
    moment = require_utc(moment)
    # Estimate the number of whole cycles, then correct by at most one step either way.
    months = (moment.year - anchor.year) * 12 + (moment.month - anchor.month)
    cycles = months // interval_months
    while add_months(anchor, cycles * interval_months) > moment:
        cycles -= 1
    while add_months(anchor, (cycles + 1) * interval_months) <= moment:
        cycles += 1
    start = add_months(anchor, cycles * interval_months)
    return Period(start, add_months(anchor, (cycles + 1) * interval_months))
