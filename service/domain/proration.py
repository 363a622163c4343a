"""Stripe-exact proration of a subscription change, computed in integer minor units and seconds."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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
    proration line is zero. `new_billed` is sorted by key too.

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
    currency = single_currency(current, target)
    old = lines_by_key(current, "current")
    new = lines_by_key(target, "target")

    start_s = whole_seconds(period.start)
    end_s = whole_seconds(period.end)
    t_s = whole_seconds(moment)
    total = end_s - start_s
    if total <= 0:
        raise ValueError("billing period must span at least one second")
    remaining = end_s - t_s
    # The same second as t_s, so the billed_from stored for the next change divides identically.
    at = moment.replace(microsecond=0)
    interval = interval_months if new_interval_months is None else new_interval_months
    resets = interval != interval_months

    lines: list[ProrationLine] = []
    # Built lazily: when t == period_end no proration line exists and [t, t) is no Period.
    rest: Period | None = None
    due = 0

    for key in sorted(old):
        line = old[key]
        from_s = whole_seconds(line.billed_from)
        # A line billed outside [period_start, t] belongs to another period or to the future:
        # crediting it would give back more than was paid for the time left.
        if not start_s <= from_s <= t_s:
            raise ValueError(
                f"line {key!r} was billed from {line.billed_from.isoformat()}, "
                "not between the period start and the proration date"
            )
        target_line = new.get(key)
        # Comparing minor units suffices: single_currency has proved one currency throughout.
        if (
            not resets
            and target_line is not None
            and target_line.unit_amount.minor == line.unit_amount.minor
            and target_line.quantity == line.quantity
        ):
            continue
        if remaining == 0 or line.billed_minor == 0:
            continue
        credit = -round_half_away(line.billed_minor * remaining, end_s - from_s)
        if credit:
            if rest is None:
                rest = Period(at, period.end)
            due += credit
            lines.append(
                ProrationLine(
                    key,
                    f"Unused time on {line.description}",
                    Money(credit, currency),
                    rest,
                    True,
                    line.quantity,
                )
            )

    new_billed: list[BilledLine] = []
    if resets:
        after = Period(at, add_months(at, interval))
        for key in sorted(new):
            target_line = new[key]
            full = target_line.unit_amount.minor * target_line.quantity
            if full:
                due += full
                lines.append(
                    ProrationLine(
                        key,
                        target_line.description,
                        Money(full, currency),
                        after,
                        False,
                        target_line.quantity,
                    )
                )
            new_billed.append(
                BilledLine(
                    key,
                    target_line.description,
                    target_line.unit_amount,
                    target_line.quantity,
                    full,
                    at,
                )
            )
    else:
        after = period
        for key in sorted(new):
            target_line = new[key]
            line = old.get(key)
            if (
                line is not None
                and target_line.unit_amount.minor == line.unit_amount.minor
                and target_line.quantity == line.quantity
            ):
                # Unchanged: it keeps what was billed for it, and from when.
                if line.description != target_line.description:
                    line = replace(line, description=target_line.description)
                new_billed.append(line)
                continue
            amount = target_line.unit_amount.minor * target_line.quantity
            charge = round_half_away(amount * remaining, total) if remaining and amount else 0
            if charge:
                if rest is None:
                    rest = Period(at, period.end)
                due += charge
                lines.append(
                    ProrationLine(
                        key,
                        f"Remaining time on {target_line.description}",
                        Money(charge, currency),
                        rest,
                        True,
                        target_line.quantity,
                    )
                )
            new_billed.append(
                BilledLine(
                    key,
                    target_line.description,
                    target_line.unit_amount,
                    target_line.quantity,
                    charge,
                    at,
                )
            )

    recurring = 0
    for target_line in target:
        recurring += target_line.unit_amount.minor * target_line.quantity
    return ProrationResult(
        lines=tuple(lines),
        amount_due=Money(due, currency),
        new_recurring=Money(recurring, currency),
        period=after,
        interval_months=interval,
        new_billed=tuple(new_billed),
    )
