"""A plan change priced for the customer: allowed or not, when it applies, and what is due now."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from service.domain.accounts import Plan, plan_lines, priced_target, recurring_amount, validate_plan
from service.domain.catalog import Catalog, Interval, Timing
from service.domain.errors import ValidationFailed
from service.domain.money import Money, monthly_from_interval
from service.domain.periods import Period
from service.domain.proration import BilledLine, ProrationLine, TargetLine, billed_in_full, prorate


class ChangeKind(StrEnum):
    upgrade = "upgrade"
    downgrade = "downgrade"


class ChangeNotAllowed(ValidationFailed):
    code = "change_not_allowed"
    title = "Change not allowed"


@dataclass(frozen=True, slots=True)
class PriceBreakdown:
    """Why the amount due differs from the change at list prices, as the billing provider
    prices it: `list_amount - discounts + tax - credit_applied == amount_due`."""

    list_amount: Money  # the change at the catalog's list prices (the local engine's quote)
    discounts: Money  # what the provider's pre-tax total is below the list amount
    tax: Money  # added on top (exclusive tax)
    credit_applied: Money  # the customer's credit balance used (negative: credit left over)
    amount_due: Money

    @classmethod
    def of(
        cls, list_amount: Money, total_excluding_tax: Money, tax: Money, amount_due: Money
    ) -> PriceBreakdown:
        """From the provider's pre-tax total, tax and amount due (the rest is the balance)."""
        return cls(
            list_amount=list_amount,
            discounts=list_amount - total_excluding_tax,
            tax=tax,
            credit_applied=total_excluding_tax + tax - amount_due,
            amount_due=amount_due,
        )

    def describe(self) -> str:
        parts = [f"list {self.list_amount}"]
        if self.discounts.minor:
            parts.append(f"discounts -{self.discounts}")
        if self.tax.minor:
            parts.append(f"tax +{self.tax}")
        if self.credit_applied.minor:
            parts.append(f"credit balance -{self.credit_applied}")
        return ", ".join(parts) + f" = {self.amount_due} due"


@dataclass(frozen=True, slots=True)
class Quote:
    """What a change costs now and from the next invoice on; `lines` are its proration lines."""

    current: Plan
    target: Plan
    kind: ChangeKind
    timing: Timing
    proration_date: datetime
    lines: tuple[ProrationLine, ...]
    amount_due: Money
    new_recurring: Money
    new_mrr: Money
    period: Period  # the billing period after the change applies
    effective_at: datetime
    catalog_version: str
    new_billed: tuple[BilledLine, ...]
    # Set when a billing provider priced the change (Stripe's preview); None: list prices.
    breakdown: PriceBreakdown | None = None

    @property
    def next_invoice_at(self) -> datetime:
        return self.period.end if self.timing is Timing.immediate else self.effective_at


def target_lines(catalog: Catalog, plan: Plan) -> list[TargetLine]:
    return [
        TargetLine(line.key, line.description, line.unit_amount, line.quantity)
        for line in plan_lines(catalog, plan)
    ]


def current_billed(catalog: Catalog, plan: Plan, period: Period) -> tuple[BilledLine, ...]:
    """The lines of a plan invoiced in full at its period start (no change yet this period)."""
    return billed_in_full(change_book(catalog).lines(plan), period)


def billed_nothing(billed: Iterable[BilledLine]) -> tuple[BilledLine, ...]:
    """The same lines, nothing charged for them: a free trial invoices 0 (as Stripe does)."""
    return tuple(replace(line, billed_minor=0) for line in billed)


def free_during_trial(quote: Quote, trial: Period) -> Quote:
    """A change during a free trial: applied at once at no charge, the trial keeps its end (the
    first paid invoice), and the new lines are billed nothing, so no later proration credits
    time that was never paid for. See docs.stripe.com/billing/subscriptions/trials: a trialing
    subscription's invoices are for 0, and changes during the trial are not prorated."""
    return replace(
        quote,
        lines=(),
        amount_due=Money(0, quote.amount_due.currency),
        period=trial,
        new_billed=billed_nothing(quote.new_billed),
    )


def plan_mrr(catalog: Catalog, plan: Plan) -> Money:
    return change_book(catalog).mrr(plan)


def _plan_mrr(catalog: Catalog, plan: Plan) -> Money:
    amount = recurring_amount(catalog, plan)
    return Money(monthly_from_interval(amount.minor, plan.interval.months), amount.currency)


def classify_change(catalog: Catalog, current: Plan, target: Plan) -> tuple[ChangeKind, Timing]:
    """Whether the change is allowed, whether it is an upgrade, and when it takes effect.

    The kind follows MRR: a change that raises the plan's MRR (or keeps it) is an upgrade, one
    that lowers it a downgrade, whatever the tiers' ranks, so the answer agrees with the ledger
    movement it books (expansion or contraction). Tier changes must be on the catalog's
    allow-list (deny by default) and sales-assisted paths are never self-serve; they take
    effect when their path says, except that a change lowering MRR never applies at once (a
    higher tier with far fewer seats waits for the end of the term like any downgrade).
    Monthly to yearly billing applies at once (the year is invoiced now), yearly to monthly at
    the end of the term; within a tier and interval an upgrade applies at once, a downgrade at
    the end of the term.

    `catalog` is the version in force; `target` is priced at its own version (priced_target).
    The allowed paths are the version in force's, or the account's own version's when its
    tier is no longer sold.
    """
    validate_plan(catalog, target, prefix="target.")
    if target == current:
        raise ChangeNotAllowed("the target is the current plan", field="target", code="no_change")
    raises_mrr = plan_mrr(catalog, target) >= plan_mrr(catalog, current)
    kind = ChangeKind.upgrade if raises_mrr else ChangeKind.downgrade
    if target.tier != current.tier:
        paths = catalog if current.tier in catalog.tiers else catalog.at_version(current.version)
        path = paths.upgrade_path(current.tier, target.tier)
        if path is None:
            raise ChangeNotAllowed(
                f"changing from '{current.tier}' to '{target.tier}' is not an allowed path",
                field="target.tier",
                code="change_not_allowed",
            )
        if path.timing is Timing.sales_assisted or not catalog.tiers[target.tier].self_serve:
            raise ChangeNotAllowed(
                f"'{target.tier}' is sold by our team: contact sales to move to it",
                field="target.tier",
                code="sales_assisted_target",
            )
        return kind, path.timing if raises_mrr else Timing.end_of_term
    if current.interval is Interval.month and target.interval is Interval.year:
        return kind, Timing.immediate
    if current.interval is Interval.year and target.interval is Interval.month:
        return kind, Timing.end_of_term
    return kind, Timing.immediate if raises_mrr else Timing.end_of_term


@dataclass(frozen=True, slots=True)
class PreparedChange:
    """A plan change classified and its target lines built: everything of a quote that does not
    depend on the moment it is priced at (see `price_change`)."""

    current: Plan
    target: Plan
    kind: ChangeKind
    timing: Timing
    target_lines: tuple[TargetLine, ...]
    new_recurring: Money
    new_mrr: Money
    catalog_version: str


def prepare_change(catalog: Catalog, current: Plan, target: Plan) -> PreparedChange:
    """Classify the change from `current` to `target` (ChangeNotAllowed if it is not allowed).
    `catalog` is the version in force; the target is priced at the version `priced_target`
    gives it, and the current plan at its own."""
    target = priced_target(catalog, current, target)
    kind, timing = classify_change(catalog, current, target)
    lines = tuple(target_lines(catalog, target))
    recurring = sum(line.unit_amount.minor * line.quantity for line in lines)
    return PreparedChange(
        current=current,
        target=target,
        kind=kind,
        timing=timing,
        target_lines=lines,
        new_recurring=Money(recurring, catalog.currency),
        new_mrr=Money(monthly_from_interval(recurring, target.interval.months), catalog.currency),
        catalog_version=target.version or catalog.version,
    )


PlanKey = tuple[str, Interval, int, tuple[tuple[str, int], ...], str]


def plan_key(plan: Plan) -> PlanKey:
    """A plan as a hashable value: equal keys, equal plans."""
    return (plan.tier, plan.interval, plan.seats, tuple(sorted(plan.addons.items())), plan.version)


class ChangeBook:
    """`prepare_change` per (current plan, target plan), and each plan's lines and MRR,
    computed once per combination for a catalog: offer pages prepare the same few changes for
    account after account (as usage.LimitBook keeps limits). What raises (a change not
    allowed, a plan the catalog does not sell) raises each time."""

    def __init__(self, catalog: Catalog, max_entries: int = 4096) -> None:
        self.catalog = catalog
        self.max_entries = max_entries
        self._changes: dict[tuple[PlanKey, PlanKey], PreparedChange] = {}
        self._lines: dict[PlanKey, tuple[TargetLine, ...]] = {}
        self._mrr: dict[PlanKey, Money] = {}

    def lines(self, plan: Plan) -> tuple[TargetLine, ...]:
        """target_lines(catalog, plan)."""
        key = plan_key(plan)
        lines = self._lines.get(key)
        if lines is None:
            lines = tuple(target_lines(self.catalog, plan))
            if len(self._lines) >= self.max_entries:
                self._lines.clear()
            self._lines[key] = lines
        return lines

    def mrr(self, plan: Plan) -> Money:
        """The plan's monthly recurring revenue (plan_mrr)."""
        key = plan_key(plan)
        mrr = self._mrr.get(key)
        if mrr is None:
            mrr = _plan_mrr(self.catalog, plan)
            if len(self._mrr) >= self.max_entries:
                self._mrr.clear()
            self._mrr[key] = mrr
        return mrr

    def prepare(self, current: Plan, target: Plan) -> PreparedChange:
        key = (plan_key(current), plan_key(target))
        change = self._changes.get(key)
        if change is None:
            change = prepare_change(self.catalog, current, target)
            if len(self._changes) >= self.max_entries:
                self._changes.clear()  # bounded: the few combinations in use come back
            self._changes[key] = change
        return change


_CHANGE_BOOKS: dict[int, ChangeBook] = {}


def change_book(catalog: Catalog) -> ChangeBook:
    """The catalog's ChangeBook, kept as long as the catalog is in use."""
    book = _CHANGE_BOOKS.get(id(catalog))
    if book is None or book.catalog is not catalog:
        if len(_CHANGE_BOOKS) >= 8:
            _CHANGE_BOOKS.clear()  # catalogs replaced (tests build many): start again
        book = _CHANGE_BOOKS[id(catalog)] = ChangeBook(catalog)
    return book


def price_change(
    change: PreparedChange,
    period: Period,
    billed: Sequence[BilledLine],
    proration_date: datetime,
) -> Quote:
    """Price a prepared change for a plan billed as `billed` in `period`, at `proration_date`."""
    if change.timing is not Timing.immediate:
        # Scheduled for the end of the term: nothing is due now and nothing is prorated.
        return Quote(
            current=change.current,
            target=change.target,
            kind=change.kind,
            timing=change.timing,
            proration_date=proration_date,
            lines=(),
            amount_due=Money.zero(change.new_recurring.currency),
            new_recurring=change.new_recurring,
            new_mrr=change.new_mrr,
            period=period,
            effective_at=period.end,
            catalog_version=change.catalog_version,
            new_billed=tuple(billed),
        )
    result = prorate(
        billed,
        period,
        change.target_lines,
        proration_date,
        interval_months=change.current.interval.months,
        new_interval_months=change.target.interval.months,
    )
    return Quote(
        current=change.current,
        target=change.target,
        kind=change.kind,
        timing=change.timing,
        proration_date=proration_date,
        lines=result.lines,
        amount_due=result.amount_due,
        new_recurring=result.new_recurring,
        new_mrr=change.new_mrr,
        period=result.period,
        effective_at=proration_date,
        catalog_version=change.catalog_version,
        new_billed=result.new_billed,
    )


def quote_change(
    catalog: Catalog,
    current: Plan,
    period: Period,
    billed: Sequence[BilledLine],
    target: Plan,
    proration_date: datetime,
) -> Quote:
    """Price the change from `current` (billed as `billed` in `period`) to `target`."""
    return price_change(prepare_change(catalog, current, target), period, billed, proration_date)
