"""Catalog diffs: what changed between two catalog versions, and what moving plans from the old
one to the new one does to their MRR and their validity."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from service.domain.accounts import Plan, plan_problems
from service.domain.catalog import Catalog, FeatureKind, LimitValue, Price, Tier
from service.domain.money import CurrencyMismatchError, Money
from service.domain.quotes import plan_mrr

# What a change says it was and became: an amount (prices), a limit (None: unlimited), a count,
# a flag, a name or a timing; None also where a thing did not exist on that side.
Value = Money | int | bool | str | None
K = TypeVar("K")


class ChangeKind(StrEnum):
    currency_changed = "currency_changed"
    feature_added = "feature_added"
    feature_removed = "feature_removed"
    tier_added = "tier_added"
    tier_removed = "tier_removed"
    tier_self_serve_changed = "tier_self_serve_changed"
    price_added = "price_added"
    price_removed = "price_removed"
    price_changed = "price_changed"
    lookup_key_changed = "lookup_key_changed"
    seats_changed = "seats_changed"
    limit_changed = "limit_changed"
    path_added = "path_added"
    path_removed = "path_removed"
    path_timing_changed = "path_timing_changed"
    addon_added = "addon_added"
    addon_removed = "addon_removed"
    addon_offered = "addon_offered"  # an existing add-on newly sold on a tier
    addon_withdrawn = "addon_withdrawn"  # an add-on no longer sold on a tier
    addon_max_quantity_changed = "addon_max_quantity_changed"
    addon_grant_changed = "addon_grant_changed"


@dataclass(frozen=True, slots=True)
class CatalogChange:
    """One difference, at its path in the catalog document (as `catalog validate` names it)."""

    kind: ChangeKind
    path: str
    before: Value
    after: Value

    def describe(self) -> str:
        what = self.kind.value.replace("_", " ")
        return f"{self.path}: {what} ({_show(self.before)} -> {_show(self.after)})"


def _show(value: Value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def diff_catalogs(old: Catalog, new: Catalog) -> tuple[CatalogChange, ...]:
    """Every difference between two catalogs that changes what is sold or at what price, in the
    order of the catalog document; `diff_catalogs(c, c)` is empty."""
    return tuple(_changes(old, new))


def _changes(old: Catalog, new: Catalog) -> Iterator[CatalogChange]:
    if old.currency != new.currency:
        yield CatalogChange(ChangeKind.currency_changed, "currency", old.currency, new.currency)
    for key in _keys(old.features, new.features):
        if key not in new.features:
            yield CatalogChange(ChangeKind.feature_removed, f"features.{key}", key, None)
        elif key not in old.features:
            yield CatalogChange(ChangeKind.feature_added, f"features.{key}", None, key)
    for key in _keys(old.tiers, new.tiers):
        here = f"tiers.{key}"
        if key not in new.tiers:
            yield CatalogChange(ChangeKind.tier_removed, here, old.tiers[key].name, None)
        elif key not in old.tiers:
            yield CatalogChange(ChangeKind.tier_added, here, None, new.tiers[key].name)
        else:
            yield from _tier_changes(old, new, key)
    for key in _keys(old.addons, new.addons):
        here = f"addons.{key}"
        if key not in new.addons:
            yield CatalogChange(ChangeKind.addon_removed, here, old.addons[key].name, None)
            continue
        if key not in old.addons:
            yield CatalogChange(ChangeKind.addon_added, here, None, new.addons[key].name)
            continue
        before, after = old.addons[key], new.addons[key]
        if before.max_quantity != after.max_quantity:
            yield CatalogChange(
                ChangeKind.addon_max_quantity_changed,
                f"{here}.max_quantity",
                before.max_quantity,
                after.max_quantity,
            )
        for feature in _keys(before.grants, after.grants):
            granted, grants = before.grants.get(feature), after.grants.get(feature)
            if granted != grants or type(granted) is not type(grants):
                yield CatalogChange(
                    ChangeKind.addon_grant_changed, f"{here}.grants.{feature}", granted, grants
                )
        for interval in _keys(before.prices, after.prices):
            yield from _price_changes(
                old,
                new,
                f"{here}.prices.{interval.value}",
                before.prices.get(interval),
                after.prices.get(interval),
            )


def _tier_changes(old: Catalog, new: Catalog, key: str) -> Iterator[CatalogChange]:
    here = f"tiers.{key}"
    before, after = old.tiers[key], new.tiers[key]
    if before.self_serve != after.self_serve:
        yield CatalogChange(
            ChangeKind.tier_self_serve_changed,
            f"{here}.self_serve",
            before.self_serve,
            after.self_serve,
        )
    for interval in _keys(before.prices, after.prices):
        was, now = before.prices.get(interval), after.prices.get(interval)
        spot = f"{here}.prices.{interval.value}"
        yield from _price_changes(old, new, f"{spot}.base", was and was.base, now and now.base)
        yield from _price_changes(old, new, f"{spot}.seat", was and was.seat, now and now.seat)
    for bound in ("included", "max"):
        was_seats, now_seats = getattr(before.seats, bound), getattr(after.seats, bound)
        if was_seats != now_seats:
            yield CatalogChange(
                ChangeKind.seats_changed, f"{here}.seats.{bound}", was_seats, now_seats
            )
    for feature in (key for key in old.features if key in new.features):
        was_limit = _limit(old, before, feature)
        now_limit = _limit(new, after, feature)
        if was_limit != now_limit or type(was_limit) is not type(now_limit):
            yield CatalogChange(
                ChangeKind.limit_changed, f"{here}.limits.{feature}", was_limit, now_limit
            )
    for addon in _ordered(before.addons, after.addons):
        if addon not in after.addons:
            yield CatalogChange(ChangeKind.addon_withdrawn, f"{here}.addons", addon, None)
        elif addon not in before.addons:
            yield CatalogChange(ChangeKind.addon_offered, f"{here}.addons", None, addon)
    for direction in ("upgrades", "downgrades"):
        was_paths = {p.to: p.timing.value for p in getattr(before, direction)}
        now_paths = {p.to: p.timing.value for p in getattr(after, direction)}
        for target in _keys(was_paths, now_paths):
            spot = f"{here}.{direction}.{target}"
            if target not in now_paths:
                yield CatalogChange(ChangeKind.path_removed, spot, was_paths[target], None)
            elif target not in was_paths:
                yield CatalogChange(ChangeKind.path_added, spot, None, now_paths[target])
            elif was_paths[target] != now_paths[target]:
                yield CatalogChange(
                    ChangeKind.path_timing_changed, spot, was_paths[target], now_paths[target]
                )


def _price_changes(
    old: Catalog, new: Catalog, path: str, before: Price | None, after: Price | None
) -> Iterator[CatalogChange]:
    was = None if before is None else old.money(before.amount)
    now = None if after is None else new.money(after.amount)
    if before is None and now is not None:
        yield CatalogChange(ChangeKind.price_added, path, None, now)
    elif after is None and was is not None:
        yield CatalogChange(ChangeKind.price_removed, path, was, None)
    elif before is not None and after is not None:
        if was != now:
            yield CatalogChange(ChangeKind.price_changed, path, was, now)
        if before.lookup_key != after.lookup_key:
            yield CatalogChange(
                ChangeKind.lookup_key_changed,
                f"{path}.lookup_key",
                before.lookup_key,
                after.lookup_key,
            )


def _limit(catalog: Catalog, tier: Tier, feature: str) -> LimitValue:
    """A tier's limit of a feature as it applies: an omitted limit is "not included"."""
    default: LimitValue = False if catalog.features[feature].kind is FeatureKind.boolean else 0
    return tier.limits.get(feature, default)


def _keys(before: Iterable[K], after: Iterable[K]) -> list[K]:
    """The keys of both sides: the old ones in their order, then the new ones."""
    return _ordered(list(before), list(after))


def _ordered(before: list[K], after: list[K]) -> list[K]:
    seen = list(before)
    seen += [key for key in after if key not in before]
    return seen


# -- the impact on accounts ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlanProblem:
    """Why a plan cannot move to the new catalog as it is, and what happens to it instead."""

    code: str
    problem: str
    outcome: str


# What the diff assumes of a plan NEW cannot sell: it is not moved, so it keeps its OLD price
# until someone decides (the migration, issue 16 point 3, moves only valid plans).
_KEPT = "stays at its OLD price"
_OUTCOMES = {
    "unknown_tier": f"no automatic target: {_KEPT} until moved to another tier",
    "interval_not_offered": f"no automatic target: {_KEPT} until moved to a sold interval",
    "seats_out_of_range": f"not moved: {_KEPT} until its seats fit the tier",
    "unknown_addon": f"not moved: {_KEPT} until the add-on is dropped",
    "addon_not_allowed": f"not moved: {_KEPT} until the add-on is dropped",
    "addon_quantity_out_of_range": f"not moved: {_KEPT} until the add-on quantity fits",
    "tier_sales_assisted": f"no list price: {_KEPT} until sales agree a contract",
    "not_on_old": "not counted: OLD does not sell this plan (are the accounts on OLD?)",
}


def _problem(code: str, problem: str) -> PlanProblem:
    return PlanProblem(code, problem, _OUTCOMES[code])


def problems_under(old: Catalog, new: Catalog, plan: Plan) -> tuple[PlanProblem, ...]:
    """Why NEW cannot take the plan as it is (empty when it can), in words."""
    tier = new.tiers.get(plan.tier)
    if tier is None:
        return (_problem("unknown_tier", "tier removed"),)
    problems: list[PlanProblem] = []
    was_self_serve = plan.tier in old.tiers and old.tiers[plan.tier].self_serve
    if was_self_serve and not tier.self_serve:
        problems.append(_problem("tier_sales_assisted", "tier now sales-assisted"))
    for failure in plan_problems(new, plan):
        code = failure.code
        if code == "interval_not_offered":
            words = f"{plan.interval.value}ly billing no longer sold"
        elif code == "seats_out_of_range":
            words = (
                f"seats above max {tier.seats.max}"
                if plan.seats > tier.seats.max
                else f"seats below the {tier.seats.included} included"
            )
        elif code in ("unknown_addon", "addon_not_allowed"):
            words = f"add-on '{failure.field.rsplit('.', 1)[-1]}' removed"
        else:  # addon_quantity_out_of_range
            addon = failure.field.rsplit(".", 1)[-1]
            words = f"add-on '{addon}' above max quantity {new.addons[addon].max_quantity}"
        problems.append(_problem(code, words))
    return tuple(problems)


@dataclass(frozen=True, slots=True)
class PricedPlan:
    """A plan's MRR at OLD prices and after the move: at NEW prices when NEW can take it, its
    OLD MRR when not (it is not moved). MRR is `quotes.plan_mrr`, what the ledger books, and
    zero for a plan that does not pay (trialing, paused, incomplete)."""

    plan: Plan
    paying: bool
    mrr_before: Money
    mrr_after: Money
    problems: tuple[PlanProblem, ...]

    @property
    def moves(self) -> bool:
        return not self.problems

    @property
    def counted(self) -> bool:
        """False for a plan OLD does not sell: it has no OLD price to compare with."""
        return not any(p.code == "not_on_old" for p in self.problems)


def price_plan(old: Catalog, new: Catalog, plan: Plan, *, paying: bool) -> PricedPlan:
    """Price one plan (of any number of accounts) at OLD and at NEW."""
    _same_currency(old, new)
    zero = Money.zero(old.currency)
    old_failure = next(plan_problems(old, plan), None)
    if old_failure is not None:
        problem = _problem("not_on_old", f"not sold by OLD: {old_failure.detail}")
        return PricedPlan(plan, paying, zero, zero, (problem,))
    before = plan_mrr(old, plan) if paying else zero
    problems = problems_under(old, new, plan)
    after = before if problems or not paying else plan_mrr(new, plan)
    return PricedPlan(plan, paying, before, after, problems)


def _same_currency(old: Catalog, new: Catalog) -> None:
    if old.currency != new.currency:
        raise CurrencyMismatchError(
            f"OLD prices in {old.currency}, NEW in {new.currency}: MRR is compared in one currency"
        )


@dataclass(frozen=True, slots=True)
class PlanGroup:
    """Accounts that share one plan and status: priced once. The ids are kept only of accounts
    whose plan does not move, the ones an operator must look at."""

    priced: PricedPlan
    accounts: int
    stuck_account_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TierImpact:
    tier: str
    accounts: int
    accounts_not_moved: int
    mrr_before: Money
    mrr_after: Money

    @property
    def mrr_change(self) -> Money:
        return self.mrr_after - self.mrr_before


@dataclass(frozen=True, slots=True)
class StuckAccount:
    """An account NEW cannot take as it is, with why and what happens to it."""

    account_id: str
    plan: Plan
    problems: tuple[PlanProblem, ...]


@dataclass(frozen=True, slots=True)
class CatalogImpact:
    """The projected effect of moving every account from OLD to NEW."""

    tiers: tuple[TierImpact, ...]
    stuck: tuple[StuckAccount, ...]
    distinct_plans: int
    currency: str

    @property
    def accounts(self) -> int:
        return sum(t.accounts for t in self.tiers)

    @property
    def mrr_before(self) -> Money:
        return _total((t.mrr_before for t in self.tiers), self.currency)

    @property
    def mrr_after(self) -> Money:
        return _total((t.mrr_after for t in self.tiers), self.currency)

    @property
    def mrr_change(self) -> Money:
        return self.mrr_after - self.mrr_before


def _total(amounts: Iterable[Money], currency: str) -> Money:
    total = Money.zero(currency)
    for amount in amounts:
        total = total + amount
    return total


def project_impact(old: Catalog, new: Catalog, groups: Iterable[PlanGroup]) -> CatalogImpact:
    """Sum priced plan groups per tier (OLD's tier order, then tiers only accounts have)."""
    _same_currency(old, new)
    zero = Money.zero(old.currency)
    counts: dict[str, list[int]] = {}
    money: dict[str, tuple[Money, Money]] = {}
    stuck: list[StuckAccount] = []
    distinct = 0
    for group in groups:
        distinct += 1
        priced = group.priced
        tier = priced.plan.tier
        count = counts.setdefault(tier, [0, 0])
        count[0] += group.accounts
        if not priced.moves:
            count[1] += group.accounts
            stuck += [
                StuckAccount(i, priced.plan, priced.problems) for i in group.stuck_account_ids
            ]
        before, after = money.get(tier, (zero, zero))
        money[tier] = (
            before + priced.mrr_before.times(group.accounts),
            after + priced.mrr_after.times(group.accounts),
        )
    order = [key for key in old.tiers if key in counts] + sorted(set(counts) - set(old.tiers))
    tiers = tuple(TierImpact(key, counts[key][0], counts[key][1], *money[key]) for key in order)
    stuck.sort(key=lambda account: account.account_id)
    return CatalogImpact(tiers, tuple(stuck), distinct, old.currency)
