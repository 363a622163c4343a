"""Quote terms (domain.quote_terms): the integer pricing of a prepared change in a fixed period
equals `price_change` / `quote_change` at every moment, and refuses what they refuse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from service.adapters.catalog_loader import load_catalog
from service.domain.accounts import Plan
from service.domain.catalog import Interval, Timing
from service.domain.errors import DomainError
from service.domain.money import Money, monthly_from_interval
from service.domain.periods import Period
from service.domain.proration import BilledLine, ProrationLine, TargetLine
from service.domain.quote_terms import QuoteAt, QuoteTerms, proration_moment, quote_terms
from service.domain.quotes import (
    ChangeBook,
    ChangeKind,
    PreparedChange,
    Quote,
    classify_change,
    current_billed,
    plan_mrr,
    prepare_change,
    price_change,
    quote_change,
    target_lines,
)

CATALOG = load_catalog(Path(__file__).resolve().parents[2] / "pricing_catalog" / "catalog.yaml")
BOUNDED = settings(max_examples=400, deadline=None)
KEYS = ("base", "seats", "addon:api_pack", "addon:sso", "addon:ünïcode")
EPOCH_2020 = datetime(2020, 1, 1, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def invoiced(terms: QuoteTerms, at: QuoteAt) -> tuple[ProrationLine, ...]:
    """The invoice lines the terms give at a moment: their non-zero lines."""
    return tuple(
        ProrationLine(
            line.key,
            line.description,
            Money(amount, terms.currency),
            Period(at.lines_start, terms.period.end if line.proration else at.period_end),
            line.proration,
            line.quantity,
        )
        for line, amount in zip(terms.lines, at.amounts, strict=True)
        if amount
    )


def assert_same_quote(terms: QuoteTerms, at: QuoteAt, quote: Quote) -> None:
    assert invoiced(terms, at) == quote.lines
    assert Money(at.amount_due, terms.currency) == quote.amount_due
    assert terms.new_recurring == quote.new_recurring
    assert at.proration_date is quote.proration_date
    assert at.period_end == quote.period.end
    if terms.reset_months:
        assert quote.period == Period(at.lines_start, at.period_end)
    else:
        assert quote.period == terms.period
    assert at.effective_at == quote.effective_at
    assert at.next_invoice_at == quote.next_invoice_at


def check(change: PreparedChange, period: Period, billed: list[BilledLine], moment: datetime):
    """Terms and price_change agree at `moment`: the same quote, or both refuse it."""
    terms = quote_terms(change, period, billed)
    pinned = proration_moment(moment)
    try:
        quote = price_change(change, period, billed, moment)
    except ValueError:  # ProrationDateOutsidePeriod is one too
        event("refused")
        assert terms is None or not terms.covers(pinned)
        return None
    assert terms is not None and terms.covers(pinned)
    event(f"priced, {'no' if not quote.lines else 'some'} lines, reset={terms.reset_months}")
    assert_same_quote(terms, terms.at(pinned), quote)
    return quote


# --- random lines, periods and moments --------------------------------------------------------


def line_lists(units: st.SearchStrategy[int]) -> st.SearchStrategy[list[TargetLine]]:
    return st.lists(
        st.builds(
            lambda key, unit, quantity: TargetLine(
                key, f"{key} line", Money(unit, "USD"), quantity
            ),
            st.sampled_from(KEYS),
            units,
            st.integers(1, 300) | st.just(0),
        ),
        min_size=1,
        max_size=len(KEYS),
        unique_by=lambda item: item.key,
    )


target_lists = line_lists(st.integers(1, 2_000_000) | st.just(0))
# Current lines from other prices than targets, or hypothesis mostly draws the two alike.
current_lists = line_lists(st.integers(0, 50_000).map(lambda unit: unit * 7))


@st.composite
def periods(draw: st.DrawFn) -> Period:
    start = EPOCH_2020 + timedelta(
        seconds=draw(st.integers(0, 10 * 365 * 86_400)),
        microseconds=draw(st.sampled_from([0, 0, 1, 500_000, 999_999])),
    )
    length = timedelta(
        seconds=draw(st.integers(1, 400 * 86_400)),
        microseconds=draw(st.sampled_from([0, 0, 1, 999_999])),
    )
    return Period(start, start + length)


@st.composite
def moments(draw: st.DrawFn, period: Period) -> datetime:
    """Anywhere in the period, often on its edges, sometimes just outside it."""
    span = int((period.end - period.start).total_seconds())
    inside = period.start + timedelta(
        seconds=draw(st.integers(0, span)), microseconds=draw(st.integers(0, 999_999))
    )
    return draw(
        st.sampled_from(
            [
                *[inside] * 4,
                inside.replace(microsecond=0),
                period.start,
                period.end,
                period.end - SECOND,
                period.start.replace(microsecond=0) + SECOND,
                period.start - SECOND,
                period.end + SECOND,
            ]
        )
    )


@st.composite
def billed_lists(draw: st.DrawFn, period: Period, moment: datetime) -> list[BilledLine]:
    """What was charged this period: in full at its start, or by an earlier change (a second
    change in the period), now and then billed from a moment prorate refuses."""
    lines = draw(current_lists)
    billed = []
    for item in lines:
        in_full = draw(st.booleans())
        if in_full:
            from_, minor = period.start, item.unit_amount.minor * item.quantity
        else:
            seconds = max(int((moment - period.start).total_seconds()), 0)
            from_ = period.start + timedelta(seconds=draw(st.integers(0, seconds)))
            from_ = draw(st.sampled_from([*[from_] * 6, moment, period.start - SECOND]))
            minor = draw(st.integers(0, 10**9))
        billed.append(
            BilledLine(item.key, item.description, item.unit_amount, item.quantity, minor, from_)
        )
    return billed


def change_to(
    target: list[TargetLine], current: Interval, new: Interval, timing: Timing
) -> PreparedChange:
    recurring = sum(line.unit_amount.minor * line.quantity for line in target)
    return PreparedChange(
        current=Plan("growth", current, 10),
        target=Plan("business", new, 10),
        kind=ChangeKind.upgrade,
        timing=timing,
        target_lines=tuple(target),
        new_recurring=Money(recurring, "USD"),
        new_mrr=Money(monthly_from_interval(recurring, new.months), "USD"),
        catalog_version="v1",
    )


@BOUNDED
@given(
    st.data(),
    periods(),
    target_lists,
    st.sampled_from(list(Interval)),
    st.sampled_from(list(Interval)),
    st.sampled_from([Timing.immediate, Timing.immediate, Timing.end_of_term]),
)
def test_terms_price_every_moment_as_price_change(
    data: st.DataObject,
    period: Period,
    target: list[TargetLine],
    current: Interval,
    new: Interval,
    timing: Timing,
) -> None:
    moment = data.draw(moments(period))
    billed = data.draw(billed_lists(period, moment))
    check(change_to(target, current, new, timing), period, billed, moment)


@BOUNDED
@given(periods(), target_lists, st.data())
def test_every_second_of_a_short_period(
    period: Period, target: list[TargetLine], data: st.DataObject
) -> None:
    """Each second of a period, so that rounding halves and the zero lines near its end occur."""
    short = Period(period.start, period.start + timedelta(seconds=7))
    billed = data.draw(billed_lists(short, short.start))
    change = change_to(target, Interval.month, Interval.month, Timing.immediate)
    for second in range(8):
        check(change, short, billed, short.start + second * SECOND)


# --- the bundled catalog: tier, seat, add-on and interval changes, then a second change -------

TIERS = sorted(key for key, tier in CATALOG.tiers.items() if tier.self_serve)


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    key = draw(st.sampled_from(TIERS))
    tier = CATALOG.tiers[key]
    interval = draw(st.sampled_from(sorted(tier.prices)))
    seats = draw(st.integers(tier.seats.included, min(tier.seats.max, tier.seats.included + 40)))
    addons = draw(st.dictionaries(st.sampled_from(sorted(tier.addons)), st.integers(1, 3)))
    return Plan(key, interval, seats, addons)


@BOUNDED
@given(plans(), plans(), plans(), periods(), st.data())
def test_terms_price_catalog_changes_and_a_second_change_in_the_period(
    current: Plan, target: Plan, second: Plan, period: Period, data: st.DataObject
) -> None:
    try:
        change = prepare_change(CATALOG, current, target)
    except DomainError:
        assume(False)
    billed = list(current_billed(CATALOG, current, period))
    first_moment = data.draw(moments(period))
    quote = check(change, period, billed, first_moment)
    if quote is not None:
        assert quote == quote_change(CATALOG, current, period, billed, target, first_moment)
    if quote is None or quote.timing is not Timing.immediate or quote.period != period:
        return
    # The second change credits what the first one charged, from when it charged it.
    try:
        again = prepare_change(CATALOG, target, second)
    except DomainError:
        return
    later = first_moment + timedelta(seconds=data.draw(st.integers(0, 40 * 86_400)))
    check(again, period, list(quote.new_billed), min(later, period.end))
    check(again, period, list(quote.new_billed), first_moment - SECOND)  # before: refused


def test_a_worked_example_mid_period_seat_change() -> None:
    period = Period(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    current = Plan("growth", Interval.month, 10)
    change = prepare_change(CATALOG, current, Plan("growth", Interval.month, 12))
    terms = quote_terms(change, period, current_billed(CATALOG, current, period))
    assert terms is not None
    at = terms.at(proration_moment(datetime(2026, 11, 6, 12, 0, 30, 250_000, tzinfo=UTC)))
    # 24.5 days less 30 seconds of 30 left: the 5 seats beyond the 5 included, at 1,500,
    # credited, and 7 charged.
    assert at.amounts == [-6_125, 8_575]
    assert at.amount_due == 2_450
    assert at.lines_start == datetime(2026, 11, 6, 12, 0, 30, tzinfo=UTC)


def test_refused_everywhere_gives_no_terms() -> None:
    period = Period(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    early = BilledLine("base", "base", Money(100, "USD"), 1, 100, period.start - SECOND)
    change = change_to([], Interval.month, Interval.month, Timing.immediate)
    assert quote_terms(change, period, [early]) is None
    euro = TargetLine("base", "base", Money(100, "EUR"), 1)
    assert (
        quote_terms(
            change_to([euro], Interval.month, Interval.month, Timing.immediate),
            period,
            [BilledLine("seats", "seats", Money(100, "USD"), 1, 100, period.start)],
        )
        is None
    )
    with pytest.raises(ValueError):
        price_change(change, period, [early], period.start)


plans = st.builds(
    lambda tier, interval, extra, packs: Plan(
        tier=tier,
        interval=interval,
        seats=CATALOG.tiers[tier].seats.included + extra,
        addons={"api_pack": packs} if packs else {},
    ),
    st.sampled_from(["starter", "growth", "business"]),
    st.sampled_from(list(Interval)),
    st.integers(min_value=0, max_value=7),
    st.integers(min_value=0, max_value=2),
)


@given(current=plans, target=plans)
def test_a_change_is_an_upgrade_exactly_when_it_does_not_lower_mrr(
    current: Plan, target: Plan
) -> None:
    """The answer's kind agrees with the ledger movement it books, and a change that lowers MRR
    never applies at once, except monthly to yearly (the year is invoiced now)."""
    try:
        kind, timing = classify_change(CATALOG, current, target)
    except DomainError:
        return
    raises = plan_mrr(CATALOG, target) >= plan_mrr(CATALOG, current)
    assert (kind is ChangeKind.upgrade) == raises
    to_yearly = current.interval is Interval.month and target.interval is Interval.year
    if not raises and not to_yearly:
        assert timing is Timing.end_of_term


def test_a_higher_tier_with_far_fewer_seats_is_a_downgrade_at_the_end_of_the_term() -> None:
    growth = Plan(tier="growth", interval=Interval.month, seats=50)  # 774.00 a month
    business = Plan(tier="business", interval=Interval.month, seats=10)  # 299.00 a month
    assert classify_change(CATALOG, growth, business) == (ChangeKind.downgrade, Timing.end_of_term)
    # The other way round the tier goes down and MRR up: an upgrade, when its path says (the
    # catalog schedules business -> growth for the end of the term).
    assert classify_change(CATALOG, business, Plan("growth", Interval.month, 40)) == (
        ChangeKind.upgrade,
        Timing.end_of_term,
    )


def test_a_change_book_prepares_each_combination_once_and_as_prepare_change() -> None:
    """domain.quotes.ChangeBook: equal plans, the same prepared change (computed once); a
    change not allowed raises each time and is not kept; the bound empties it, nothing else."""
    book = ChangeBook(CATALOG, max_entries=2)
    current = Plan("growth", Interval.month, 8, {"api_pack": 1})
    target = Plan("business", Interval.month, 10, {"api_pack": 1})
    first = book.prepare(current, target)
    assert first == prepare_change(CATALOG, current, target)
    again = book.prepare(Plan("growth", Interval.month, 8, {"api_pack": 1}), target)
    assert again is first
    # Another add-on set is another plan, another change.
    other = book.prepare(Plan("growth", Interval.month, 8), Plan("growth", Interval.month, 9))
    assert other == prepare_change(
        CATALOG, Plan("growth", Interval.month, 8), Plan("growth", Interval.month, 9)
    )
    for _ in range(2):
        with pytest.raises(DomainError):
            book.prepare(current, current)
    # Full (two entries): the next one starts it again, and is right.
    third = book.prepare(current, Plan("growth", Interval.month, 9, {"api_pack": 1}))
    assert third.target.seats == 9 and book.prepare(current, target) == first


def test_a_change_book_keeps_each_plans_lines_and_mrr() -> None:
    book = ChangeBook(CATALOG)
    plan = Plan("growth", Interval.year, 12, {"api_pack": 2})
    lines = book.lines(plan)
    assert list(lines) == target_lines(CATALOG, plan)
    assert book.lines(Plan("growth", Interval.year, 12, {"api_pack": 2})) is lines
    amount = sum(line.unit_amount.minor * line.quantity for line in lines)
    assert book.mrr(plan) == Money(monthly_from_interval(amount, 12), CATALOG.currency)
    unsold = Plan("no-such-tier", Interval.month, 1)
    for _ in range(2):
        with pytest.raises(KeyError):
            book.mrr(unsold)
