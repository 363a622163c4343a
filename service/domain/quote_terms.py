"""A prepared change reduced, for one billing period and the lines billed in it, to the integers
that price it at any second: `quotes.price_change` in a few integer operations, to the minor unit.

An account's offers are priced on every page load, always in the same period against the same
billed lines; only the proration date moves. `quote_terms` does once everything `prorate` does
that does not depend on that date (which lines are credited or charged, their descriptions, the
spans they are prorated over, the checks), and `QuoteTerms.at` does the rest: per line one
multiplication and one floor division. Property tests hold it equal to `price_change`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

from service.domain.catalog import Timing
from service.domain.money import Money
from service.domain.periods import Period, add_months, require_utc
from service.domain.proration import (
    BilledLine,
    TargetLine,
    lines_by_key,
    single_currency,
    whole_seconds,
)
from service.domain.quotes import PreparedChange


@dataclass(frozen=True, slots=True)
class TermLine:
    """An invoice line the change may produce, in the order `prorate` lists them.

    At second t a proration line amounts to `amount` x (period_end - t) / `span_s`, rounded to
    the minor unit halves away from zero (money.round_half_away); a full-period charge (on an
    interval change, proration False) is `amount` at every second. A line amounting to zero at
    t is not on the invoice.
    """

    key: str
    description: str  # as invoiced: "Unused time on …", "Remaining time on …", or the line's own
    quantity: int
    proration: bool
    amount: int  # minor units; negative for a credit
    span_s: int  # the seconds `amount` pays for, up to the period end; 0 for a full-period charge


class ProrationMoment(NamedTuple):
    """A proration date, and the second `prorate` counts it as."""

    proration_date: datetime  # as pinned: what the quote shows
    second: datetime  # in UTC, floored to the second: where the proration lines start
    seconds: int  # whole Unix seconds


def proration_moment(proration_date: datetime) -> ProrationMoment:
    second = proration_date
    if second.microsecond or second.tzinfo is not UTC:
        second = require_utc(second, "proration_date").replace(microsecond=0)
    return ProrationMoment(proration_date, second, whole_seconds(second))


class QuoteAt(NamedTuple):
    """The parts of a change's quote that depend on its proration date (`QuoteTerms.at`)."""

    proration_date: datetime
    lines_start: datetime  # every line's period starts here
    amounts: list[int]  # per QuoteTerms.lines, zeros included (those lines are not invoiced)
    amount_due: int
    period_end: datetime  # of the billing period after the change; full-period lines end here
    effective_at: datetime
    next_invoice_at: datetime


@dataclass(frozen=True, slots=True)
class QuoteTerms:
    """A prepared change priced in one billing period against its billed lines, at any moment
    `covers`: the same amounts, lines and dates as `price_change` (see the module docstring)."""

    change: PreparedChange
    period: Period  # the billing period priced in: proration lines end at its end
    currency: str  # of every amount of the quote
    new_recurring: Money
    lines: tuple[TermLine, ...]
    first_second: int  # prorate refuses a proration date before a line's billed_from second
    reset_months: int  # the change restarts the billing period, this many months long; 0: not
    # Per line (sign, 2 |amount|, span, 2 span, fixed amount): round_half_away(n, d) for n >= 0 is
    # (2n + d) // 2d, which spares the divmod, abs and comparisons of the general function.
    _rates: tuple[tuple[int, int, int, int, int], ...] = field(init=False, repr=False)
    _end_s: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rates = tuple(
            (-1 if line.amount < 0 else 1, 2 * abs(line.amount), line.span_s, 2 * line.span_s, 0)
            if line.span_s
            else (1, 0, 0, 0, line.amount)
            for line in self.lines
        )
        object.__setattr__(self, "_rates", rates)
        object.__setattr__(self, "_end_s", whole_seconds(self.period.end))

    @property
    def immediate(self) -> bool:
        return self.change.timing is Timing.immediate

    def covers(self, moment: ProrationMoment) -> bool:
        """Whether `at` prices this moment; `price_change` refuses every other one."""
        if not self.immediate:
            return True  # nothing is prorated: any moment prices
        period = self.period
        return (
            period.start <= moment.proration_date <= period.end
            and moment.seconds >= self.first_second
        )

    def at(self, moment: ProrationMoment) -> QuoteAt:
        """The quote's moving parts at a moment this covers (`covers`)."""
        if not self.immediate:  # scheduled for the end of the term: nothing due now
            end = self.period.end
            return QuoteAt(moment.proration_date, moment.second, [], 0, end, end, end)
        remaining = self._end_s - moment.seconds
        amounts = [
            sign * ((twice * remaining + span) // twice_span) if twice_span else fixed
            for sign, twice, span, twice_span, fixed in self._rates
        ]
        end = add_months(moment.second, self.reset_months) if self.reset_months else self.period.end
        date = moment.proration_date
        return QuoteAt(date, moment.second, amounts, sum(amounts), end, date, end)


def _same_price(line: BilledLine | None, target: TargetLine | None) -> bool:
    """An unchanged line: prorate neither credits nor charges it."""
    return (
        line is not None
        and target is not None
        and target.unit_amount.minor == line.unit_amount.minor
        and target.quantity == line.quantity
    )


def quote_terms(
    change: PreparedChange, period: Period, billed: Sequence[BilledLine]
) -> QuoteTerms | None:
    """`change` for a plan billed as `billed` in `period`, reduced to integer terms; None when
    `prorate` refuses it at every moment (pricing it says why). Mirrors `proration.prorate`."""
    if change.timing is not Timing.immediate:
        recurring = change.new_recurring
        return QuoteTerms(change, period, recurring.currency, recurring, (), 0, 0)
    months, new_months = change.current.interval.months, change.target.interval.months
    target = change.target_lines
    try:
        if months < 1 or new_months < 1:
            raise ValueError("billing intervals must be at least one month")
        currency = single_currency(billed, target)
        old = lines_by_key(billed, "current")
        new = lines_by_key(target, "target")
    except ValueError:
        return None
    start_s, end_s = whole_seconds(period.start), whole_seconds(period.end)
    if end_s <= start_s:
        return None
    resets = new_months != months
    lines: list[TermLine] = []
    first = start_s
    for key in sorted(old):
        line = old[key]
        from_s = whole_seconds(line.billed_from)
        if from_s < start_s:
            return None  # billed before the period: prorate refuses it at any moment
        first = max(first, from_s)
        if (not resets and _same_price(line, new.get(key))) or not line.billed_minor:
            continue
        if from_s < end_s:  # else only the period end is covered, where credits are zero
            description = f"Unused time on {line.description}"
            span = end_s - from_s
            lines.append(TermLine(key, description, line.quantity, True, -line.billed_minor, span))
    for key in sorted(new):
        target_line = new[key]
        amount = target_line.unit_amount.minor * target_line.quantity
        if not amount:
            continue  # a zero line is never invoiced
        if resets:  # the new period is charged in full, from the change on
            lines.append(
                TermLine(key, target_line.description, target_line.quantity, False, amount, 0)
            )
        elif not _same_price(old.get(key), target_line):
            description = f"Remaining time on {target_line.description}"
            span = end_s - start_s
            lines.append(TermLine(key, description, target_line.quantity, True, amount, span))
    recurring = sum(line.unit_amount.minor * line.quantity for line in target)
    return QuoteTerms(
        change,
        period,
        currency,
        Money(recurring, currency),
        tuple(lines),
        first,
        new_months if resets else 0,
    )
