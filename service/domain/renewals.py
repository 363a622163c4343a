"""The renewal rule: which plan and which period an account moves into at its period's end."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from service.domain.accounts import AccountStatus, Plan
from service.domain.periods import Period, add_months


@dataclass(frozen=True, slots=True)
class Scheduled:
    """A change waiting for a period end (a downgrade, or any end-of-term change)."""

    change_id: str
    effective_at: datetime
    plan: Plan


@dataclass(frozen=True, slots=True)
class Term:
    """What renewal reads and writes of an account: its plan, status and billing cycle."""

    plan: Plan
    status: AccountStatus
    anchor: datetime  # whole intervals are counted from here (Stripe's billing_cycle_anchor)
    period: Period


@dataclass(frozen=True, slots=True)
class Renewal:
    """One boundary crossed: the term after it and the scheduled changes it applied."""

    boundary: datetime
    term: Term  # its status is the one before payment: the invoice's outcome decides
    applied: tuple[str, ...]


def next_term(term: Term, waiting: Sequence[Scheduled]) -> Renewal:
    """The term that starts at `term.period.end`.

    Every change in `waiting` due by the boundary applies, the latest last (a later one
    supersedes an earlier one). A new interval starts a new cycle at the boundary; so does a
    trial's end ("a new billing cycle also begins for the customer when the trial ends",
    docs.stripe.com/billing/subscriptions/trials), so the first paid period is a whole one.
    Otherwise the period ends a whole number of intervals after the anchor, so a cycle anchored
    on the 31st comes back to the 31st after February.
    """
    boundary = term.period.end
    plan = term.plan
    applied = []
    for change in waiting:
        if change.effective_at <= boundary:
            plan = change.plan
            applied.append(change.change_id)
    anchor = term.anchor
    if plan.interval != term.plan.interval or term.status == AccountStatus.trialing:
        anchor = boundary
    months = plan.interval.months
    cycles = 1
    while add_months(anchor, cycles * months) <= boundary:
        cycles += 1
    period = Period(boundary, add_months(anchor, cycles * months))
    return Renewal(boundary, Term(plan, term.status, anchor, period), tuple(applied))
