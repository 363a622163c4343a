"""Billing and usage periods: anchored months, leap days, UTC only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from service.domain.periods import Period, add_months, billing_period_containing, calendar_month


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_month_end_anchor_clamps_and_recovers() -> None:
    anchor = utc(2024, 1, 31)
    assert add_months(anchor, 1) == utc(2024, 2, 29)
    assert add_months(anchor, 2) == utc(2024, 3, 31)
    assert add_months(anchor, 13) == utc(2025, 2, 28)


def test_leap_day_anchor_on_yearly_cycle() -> None:
    assert add_months(utc(2024, 2, 29), 12) == utc(2025, 2, 28)
    assert add_months(utc(2024, 2, 29), 48) == utc(2028, 2, 29)


def test_calendar_month_uses_utc_not_local_offset() -> None:
    # 23:30 on Jan 31 in UTC-5 is already February in UTC.
    local = datetime(2026, 1, 31, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert calendar_month(local) == Period(utc(2026, 2, 1), utc(2026, 3, 1))


def test_billing_period_containing() -> None:
    anchor = utc(2026, 1, 31, 10)
    assert billing_period_containing(anchor, 1, utc(2026, 3, 5)) == Period(
        utc(2026, 2, 28, 10), utc(2026, 3, 31, 10)
    )
    assert billing_period_containing(anchor, 1, utc(2026, 3, 31, 10)) == Period(
        utc(2026, 3, 31, 10), utc(2026, 4, 30, 10)
    )
    assert billing_period_containing(anchor, 12, utc(2025, 6, 1)).start == utc(2025, 1, 31, 10)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError):
        calendar_month(datetime(2026, 1, 1))  # noqa: DTZ001 - the point of the test
