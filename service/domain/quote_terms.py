"""A prepared change priced at any second of one billing period, against the lines billed in
it: `quotes.price_change` without redoing what does not depend on the proration date.

An account's offers are priced on every page load, always in the same period against the same
billed lines; only the proration date moves. `quote_terms` takes `proration.proration_terms`
(which lines are credited or charged, their descriptions and spans, the checks) once, and
`QuoteTerms.at` prices them at a moment: per line one rounded division (ProrationTerm.amount_at,
the same one `prorate` uses). Property tests hold it equal to `price_change`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from service.domain.catalog import Timing
from service.domain.money import Money
from service.domain.periods import Period, add_months, require_utc
from service.domain.proration import (
    BilledLine,
    ProrationTerm,
    ProrationTerms,
    proration_terms,
    whole_seconds,
)
from service.domain.quotes import PreparedChange


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
    proration: ProrationTerms | None  # None: scheduled for the end of the term, nothing prorated

    @property
    def lines(self) -> tuple[ProrationTerm, ...]:
        return () if self.proration is None else self.proration.lines

    @property
    def first_second(self) -> int:
        """prorate refuses a proration date before this (a line's billed_from second)."""
        return 0 if self.proration is None else self.proration.first_s

    @property
    def reset_months(self) -> int:
        """The change restarts the billing period, this many months long; 0: it does not."""
        terms = self.proration
        return terms.interval_months if terms is not None and terms.resets else 0

    def covers(self, moment: ProrationMoment) -> bool:
        """Whether `at` prices this moment; `price_change` refuses every other one."""
        if self.proration is None:
            return True  # nothing is prorated: any moment prices
        period = self.period
        return (
            period.start <= moment.proration_date <= period.end
            and moment.seconds >= self.proration.first_s
        )

    def at(self, moment: ProrationMoment) -> QuoteAt:
        """The quote's moving parts at a moment this covers (`covers`)."""
        terms = self.proration
        if terms is None:  # scheduled for the end of the term: nothing due now
            end = self.period.end
            return QuoteAt(moment.proration_date, moment.second, [], 0, end, end, end)
        remaining = terms.end_s - moment.seconds
        amounts = [line.amount_at(remaining) for line in terms.lines]
        end = add_months(moment.second, terms.interval_months) if terms.resets else self.period.end
        date = moment.proration_date
        return QuoteAt(date, moment.second, amounts, sum(amounts), end, date, end)


def quote_terms(
    change: PreparedChange, period: Period, billed: Sequence[BilledLine]
) -> QuoteTerms | None:
    """`change` for a plan billed as `billed` in `period`, reduced to its proration terms; None
    when `prorate` refuses it at every moment (pricing it says why)."""
    if change.timing is not Timing.immediate:
        recurring = change.new_recurring
        return QuoteTerms(change, period, recurring.currency, recurring, None)
    try:
        terms = proration_terms(
            billed,
            period,
            change.target_lines,
            interval_months=change.current.interval.months,
            new_interval_months=change.target.interval.months,
        )
    except ValueError:  # CurrencyMismatchError is one too
        return None
    return QuoteTerms(change, period, terms.currency, Money(terms.recurring, terms.currency), terms)
