"""The renewal rule (domain.renewals.next_term): the plan and period an account moves into."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from service.domain.accounts import AccountStatus, Plan
from service.domain.catalog import Interval
from service.domain.periods import Period, add_months
from service.domain.renewals import Scheduled, Term, next_term

GROWTH = Plan("growth", Interval.month, 7)
# hypothesis bounds are naive; the strategy's timezones make every value UTC
YEAR_2020 = datetime(2020, 1, 1)  # noqa: DTZ001
YEAR_2035 = datetime(2035, 12, 31)  # noqa: DTZ001
JAN_31 = datetime(2027, 1, 31, 9, 30, tzinfo=UTC)


def monthly(anchor: datetime, periods: int = 1, plan: Plan = GROWTH) -> Term:
    start = add_months(anchor, periods - 1)
    return Term(plan, AccountStatus.active, anchor, Period(start, add_months(anchor, periods)))


def test_a_cycle_anchored_on_the_31st_comes_back_to_the_31st_after_february() -> None:
    feb = next_term(monthly(JAN_31), [])
    assert feb.term.period == Period(datetime(2027, 2, 28, 9, 30, tzinfo=UTC), feb.term.period.end)
    march = next_term(feb.term, [])
    assert march.term.period.end == datetime(2027, 4, 30, 9, 30, tzinfo=UTC)
    assert march.term.period.start == datetime(2027, 3, 31, 9, 30, tzinfo=UTC)
    assert march.term.anchor == JAN_31


def test_changes_due_by_the_boundary_apply_the_latest_last_and_later_ones_wait() -> None:
    term = monthly(JAN_31)
    boundary = term.period.end
    waiting = [
        Scheduled("c1", boundary - timedelta(days=3), GROWTH.with_changes(seats=5)),
        Scheduled("c2", boundary, GROWTH.with_changes(seats=6)),
        Scheduled("c3", boundary + timedelta(seconds=1), GROWTH.with_changes(seats=2)),
    ]
    renewal = next_term(term, waiting)
    assert renewal.term.plan.seats == 6
    assert renewal.applied == ("c1", "c2")
    assert renewal.boundary == boundary


def test_a_new_interval_and_a_trials_end_start_a_new_cycle_at_the_boundary() -> None:
    term = monthly(JAN_31, periods=3)
    boundary = term.period.end
    yearly = next_term(
        term, [Scheduled("y", boundary, GROWTH.with_changes(interval=Interval.year))]
    )
    assert yearly.term.anchor == boundary
    assert yearly.term.period == Period(boundary, add_months(boundary, 12))
    trial = Term(GROWTH, AccountStatus.trialing, JAN_31, Period(JAN_31, JAN_31 + timedelta(14)))
    paid = next_term(trial, [])
    assert paid.term.anchor == JAN_31 + timedelta(14)
    assert paid.term.period == Period(paid.term.anchor, add_months(paid.term.anchor, 1))


@given(
    anchor=st.datetimes(min_value=YEAR_2020, max_value=YEAR_2035, timezones=st.just(UTC)),
    periods=st.integers(min_value=1, max_value=40),
    interval=st.sampled_from(list(Interval)),
)
def test_every_period_starts_at_the_boundary_and_ends_a_whole_number_of_intervals_on(
    anchor: datetime, periods: int, interval: Interval
) -> None:
    plan = Plan("growth", interval, 7)
    months = interval.months
    term = Term(
        plan,
        AccountStatus.active,
        anchor,
        Period(add_months(anchor, (periods - 1) * months), add_months(anchor, periods * months)),
    )
    renewal = next_term(term, [])
    assert renewal.term.period.start == term.period.end
    assert renewal.term.period.end == add_months(anchor, (periods + 1) * months)
    assert renewal.term.period.end > renewal.term.period.start
    assert renewal.term.anchor == anchor and renewal.applied == ()
