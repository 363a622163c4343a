"""Stripe-exact proration of a subscription change, computed in integer minor units and seconds."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from service.domain.errors import ValidationFailed
from service.domain.money import CurrencyMismatchError, Money, round_half_away
from service.domain.periods import Period, add_months, require_utc

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)

_Line = TypeVar("_Line", "BilledLine", "TargetLine")


class ProrationDateOutsidePeriod(ValidationFailed, ValueError):
    """The proration date is not within [period_start, period_end] of the period being changed.

    Also a ValueError, so pure callers need not know the DomainError hierarchy.
    """

    code = "proration_date_outside_period"
    title = "Proration date outside the billing period"


def _check_line(key: str, unit_amount: Money, quantity: int) -> None:
    if not key:
        raise ValueError("line key must not be empty")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
        raise ValueError(f"line {key!r}: quantity must be a non-negative integer, got {quantity!r}")
    if unit_amount.minor < 0:
        raise ValueError(f"line {key!r}: unit amount must not be negative, got {unit_amount}")


@dataclass(frozen=True, slots=True)
class TargetLine:
    """A line of the subscription as it will be after the change."""

    key: str  # stable line key, e.g. "base", "seats", "addon:priority_support"
    description: str
    unit_amount: Money  # per unit per billing interval
    quantity: int

    def __post_init__(self) -> None:
        _check_line(self.key, self.unit_amount, self.quantity)

    @property
    def amount(self) -> Money:
        return self.unit_amount.times(self.quantity)


@dataclass(frozen=True, slots=True)
class BilledLine:
    """A line of the current subscription and what was actually charged for it this period."""

    key: str
    description: str
    unit_amount: Money  # per unit per billing interval
    quantity: int
    billed_minor: int  # what was charged for this line for [billed_from, period_end)
    billed_from: datetime

    def __post_init__(self) -> None:
        _check_line(self.key, self.unit_amount, self.quantity)
        if isinstance(self.billed_minor, bool) or not isinstance(self.billed_minor, int):
            raise TypeError(f"line {self.key!r}: billed_minor must be integer minor units")
        if self.billed_minor < 0:
            raise ValueError(f"line {self.key!r}: billed_minor must not be negative")
        object.__setattr__(self, "billed_from", require_utc(self.billed_from, "billed_from"))

    @property
    def amount(self) -> Money:
        return self.unit_amount.times(self.quantity)


@dataclass(frozen=True, slots=True)
class ProrationLine:
    """One invoice line of the change: negative amounts are credits."""

    key: str
    description: str
    amount: Money
    period: Period
    proration: bool  # False only for the full new period charged on an interval change
    quantity: int


@dataclass(frozen=True, slots=True)
class ProrationResult:
    """The invoice lines of a change and the subscription state it leaves behind."""

    lines: tuple[ProrationLine, ...]
    amount_due: Money  # sum of lines; negative is a credit balance kept on the customer
    new_recurring: Money  # sum of the target lines per (new) billing interval
    period: Period  # the billing period after the change
    interval_months: int  # the billing interval after the change
    new_billed: tuple[BilledLine, ...]  # the current lines to pass to the next change

    @property
    def next_invoice_at(self) -> datetime:
        return self.period.end


def billed_in_full(lines: Iterable[TargetLine], period: Period) -> tuple[BilledLine, ...]:
    """The current lines of a subscription whose whole period was invoiced at its start."""
    start = period.start
    return tuple(
        BilledLine(
            line.key,
            line.description,
            line.unit_amount,
            line.quantity,
            line.unit_amount.minor * line.quantity,
            start,
        )
        for line in lines
    )


def whole_seconds(moment: datetime) -> int:
    """Unix seconds, floored: Stripe sees whole seconds, so every timestamp is floored to the
    second before dividing."""
    return (moment - _EPOCH) // _SECOND


def lines_by_key(lines: Sequence[_Line], what: str) -> dict[str, _Line]:
    by_key = {line.key: line for line in lines}
    if len(by_key) != len(lines):
        raise ValueError(f"{what} lines have duplicate keys")
    return by_key


def single_currency(current: Sequence[BilledLine], target: Sequence[TargetLine]) -> str:
    currency: str | None = None
    for line in (*current, *target):
        code = line.unit_amount.currency
        if currency is None:
            currency = code
        elif code != currency:
            raise CurrencyMismatchError(f"a subscription has one currency: {currency} and {code}")
    if currency is None:
        raise ValueError("nothing to prorate: no current and no target lines")
    return currency


@dataclass(frozen=True, slots=True)
class ProrationTerm:
    """An invoice line a change may produce, before the proration date is known.

    With `remaining_s` whole seconds left in the period, a proration line amounts to
    `amount` x remaining_s / `span_s`, rounded to the minor unit halves away from zero
    (money.round_half_away); a full new-period charge (an interval change) is `amount`.
    """

    key: str
    description: str  # as invoiced: "Unused time on …", "Remaining time on …", or the line's own
    quantity: int
    proration: bool  # False only for the full new period charged on an interval change
    amount: int  # minor units; negative for a credit of what was billed
    span_s: int  # the seconds `amount` pays for, up to the period end; 0 when not prorated

    def amount_at(self, remaining_s: int) -> int:
        if not self.proration:
            return self.amount
        return round_half_away(self.amount * remaining_s, self.span_s)


@dataclass(frozen=True, slots=True)
class ProrationTerms:
    """Everything `prorate` decides before the proration date: which lines are credited or
    charged, over which spans, in which order. `at` them for a date is then one division per
    line, so an offer shown on every page load is priced without redoing the rest."""

    currency: str
    period: Period
    end_s: int  # the period end in whole seconds
    first_s: int  # the latest billed_from second: an earlier proration date is refused
    interval_months: int  # the billing interval after the change
    resets: bool  # the interval changes: the billing period restarts at the proration date
    lines: tuple[ProrationTerm, ...]  # credits first, then charges, each sorted by key
    recurring: int  # the target lines per (new) billing interval, minor units
    current: Mapping[str, BilledLine]
    target: Mapping[str, TargetLine]


def _unchanged(line: BilledLine | None, target_line: TargetLine | None, resets: bool) -> bool:
    # Comparing minor units suffices: single_currency has proved one currency throughout.
    return (
        not resets
        and line is not None
        and target_line is not None
        and target_line.unit_amount.minor == line.unit_amount.minor
        and target_line.quantity == line.quantity
    )


def _billed_outside(key: str, line: BilledLine) -> ValueError:
    # A line billed outside [period_start, t] belongs to another period or to the future:
    # crediting it would give back more than was paid for the time left.
    return ValueError(
        f"line {key!r} was billed from {line.billed_from.isoformat()}, "
        "not between the period start and the proration date"
    )


def proration_terms(
    current: Sequence[BilledLine],
    period: Period,
    target: Sequence[TargetLine],
    *,
    interval_months: int,
    new_interval_months: int | None = None,
) -> ProrationTerms:
    """The date-independent part of `prorate` (see there for the rules and the errors, but for
    the proration date's own checks, which `prorate` makes)."""
    if interval_months < 1 or (new_interval_months is not None and new_interval_months < 1):
        raise ValueError("billing intervals must be at least one month")
    currency = single_currency(current, target)
    old = lines_by_key(current, "current")
    new = lines_by_key(target, "target")
    start_s = whole_seconds(period.start)
    end_s = whole_seconds(period.end)
    if end_s <= start_s:
        raise ValueError("billing period must span at least one second")
    interval = interval_months if new_interval_months is None else new_interval_months
    resets = interval != interval_months

    lines: list[ProrationTerm] = []
    first_s = start_s
    for key in sorted(old):
        line = old[key]
        from_s = whole_seconds(line.billed_from)
        if from_s < start_s:
            raise _billed_outside(key, line)
        first_s = max(first_s, from_s)
        # A line billed from the period end can only be credited at the period end: nothing.
        if _unchanged(line, new.get(key), resets) or not line.billed_minor or from_s == end_s:
            continue
        description = f"Unused time on {line.description}"
        span = end_s - from_s
        lines.append(ProrationTerm(key, description, line.quantity, True, -line.billed_minor, span))
    for key in sorted(new):
        target_line = new[key]
        amount = target_line.unit_amount.minor * target_line.quantity
        if not amount or _unchanged(old.get(key), target_line, resets):
            continue
        if resets:  # the new period is charged in full, from the change on
            description, span = target_line.description, 0
        else:
            description, span = f"Remaining time on {target_line.description}", end_s - start_s
        lines.append(
            ProrationTerm(key, description, target_line.quantity, not resets, amount, span)
        )
    return ProrationTerms(
        currency=currency,
        period=period,
        end_s=end_s,
        first_s=first_s,
        interval_months=interval,
        resets=resets,
        lines=tuple(lines),
        recurring=sum(line.unit_amount.minor * line.quantity for line in target),
        current=old,
        target=new,
    )


def prorate(
    current: Sequence[BilledLine],
    period: Period,
    target: Sequence[TargetLine],
    proration_date: datetime,
    *,
    interval_months: int,
    new_interval_months: int | None = None,
) -> ProrationResult:
    """Invoice lines for changing `current` to `target` at `proration_date`, as Stripe bills them.

    Per line key: a line only in `current` is credited for its unused time, a line only in
    `target` is charged for the remaining time, a line whose unit amount or quantity changed is
    both, and an unchanged line produces nothing. A tier change is thus a credit of the old base
    and seats and a charge of the new ones; a quantity change credits old_qty x unit and charges
    new_qty x unit. Time is counted in whole seconds (timestamps floored, as Stripe's are):

        charge = round(amount * (period_end - t) / (period_end - period_start))
        credit = -round(billed_minor * (period_end - t) / (period_end - billed_from))

    The credit uses what was actually charged for the line and from when, so a second change in
    the same period gives back exactly what the first one charged for the time left. Each line
    is rounded to an integer minor unit before summing, halves away from zero
    (money.round_half_away), which makes a credit the exact negative of the same charge.

    When `new_interval_months` differs from `interval_months`, the billing period resets: every
    current line is credited for its unused time and every target line is charged in full
    (proration=False) for [t, add_months(t, new_interval_months)).

    Lines are ordered credits first, then charges, each sorted by key, so the result does not
    depend on the order of the inputs. Zero-amount lines are left out; at period_end every
    proration line is zero. `new_billed` is sorted by key too. What does not depend on t is
    `proration_terms`; this prices them at t.

    Raises ProrationDateOutsidePeriod (a ValueError) if t is outside [period.start, period.end],
    CurrencyMismatchError if the lines mix currencies, and ValueError for duplicate keys or a
    line billed outside [period.start, t].
    """
    if interval_months < 1 or (new_interval_months is not None and new_interval_months < 1):
        raise ValueError("billing intervals must be at least one month")
    moment = require_utc(proration_date, "proration_date")
    if not period.start <= moment <= period.end:
        raise ProrationDateOutsidePeriod(
            f"proration date {moment.isoformat()} is outside the billing period "
            f"[{period.start.isoformat()}, {period.end.isoformat()}]",
            field="proration_date",
        )
    terms = proration_terms(
        current,
        period,
        target,
        interval_months=interval_months,
        new_interval_months=new_interval_months,
    )
    t_s = whole_seconds(moment)
    if t_s < terms.first_s:
        key, line = next(
            (key, line)
            for key, line in sorted(terms.current.items())
            if whole_seconds(line.billed_from) > t_s
        )
        raise _billed_outside(key, line)
    remaining = terms.end_s - t_s
    # The same second as t_s, so the billed_from stored for the next change divides identically.
    at = moment.replace(microsecond=0)
    after = Period(at, add_months(at, terms.interval_months)) if terms.resets else period
    # Built lazily: when t == period_end no proration line exists and [t, t) is no Period.
    rest: Period | None = None
    lines: list[ProrationLine] = []
    charged: dict[str, int] = {}  # what each changed target line is charged, for new_billed
    for term in terms.lines:
        amount = term.amount_at(remaining)
        if term.amount > 0:
            charged[term.key] = amount
        if not amount:
            continue
        if term.proration and rest is None:
            rest = Period(at, period.end)
        line_period = rest if term.proration else after
        assert line_period is not None
        money = Money(amount, terms.currency)
        lines.append(
            ProrationLine(
                term.key, term.description, money, line_period, term.proration, term.quantity
            )
        )

    new_billed: list[BilledLine] = []
    for key, target_line in sorted(terms.target.items()):
        line = terms.current.get(key)
        if _unchanged(line, target_line, terms.resets):
            assert line is not None
            # Unchanged: it keeps what was billed for it, and from when.
            if line.description != target_line.description:
                line = replace(line, description=target_line.description)
            new_billed.append(line)
            continue
        new_billed.append(
            BilledLine(
                key,
                target_line.description,
                target_line.unit_amount,
                target_line.quantity,
                charged.get(key, 0),
                at,
            )
        )
    return ProrationResult(
        lines=tuple(lines),
        amount_due=Money(sum(line.amount.minor for line in lines), terms.currency),
        new_recurring=Money(terms.recurring, terms.currency),
        period=after,
        interval_months=terms.interval_months,
        new_billed=tuple(new_billed),
    )
