"""An account's plan (tier, interval, seats, add-ons) and the recurring lines it bills."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from service.domain.catalog import Catalog, Interval
from service.domain.errors import ValidationFailed
from service.domain.money import Money


class AccountStatus(StrEnum):
    active = "active"
    trialing = "trialing"
    past_due = "past_due"
    canceled = "canceled"
    # Stripe's: a trial ended without a payment method (trial_settings pause), or a new
    # subscription whose first payment has not gone through. Neither pays, so neither has MRR
    # nor gets offers until it becomes active.
    paused = "paused"
    incomplete = "incomplete"


@dataclass(frozen=True, slots=True)
class Plan:
    """What an account subscribes to; seats are the purchased seats, included ones counted."""

    tier: str
    interval: Interval
    seats: int
    addons: dict[str, int] = field(default_factory=dict)
    # The catalog version the plan is priced at ("": the catalog at hand). Grandfathering: an
    # account keeps its version through seat, add-on and interval changes; a tier change buys
    # the version in force (see `priced_target`).
    version: str = ""

    def with_changes(
        self,
        *,
        tier: str | None = None,
        interval: Interval | None = None,
        seats: int | None = None,
        addons: dict[str, int] | None = None,
    ) -> Plan:
        return Plan(
            tier=tier or self.tier,
            interval=interval or self.interval,
            seats=self.seats if seats is None else seats,
            addons=dict(self.addons if addons is None else addons),
            version=self.version,
        )

    def matches(self, other: Plan) -> bool:
        """The same tier, interval, seats and add-ons, at the same catalog version where both
        name one: a plan read back from a billing provider names a version only when its
        prices tell it (a price shared by several versions does not)."""
        return (
            (self.tier, self.interval, self.seats, self.addons)
            == (other.tier, other.interval, other.seats, other.addons)
        ) and (not self.version or not other.version or self.version == other.version)

    def at_version(self, version: str) -> Plan:
        return Plan(self.tier, self.interval, self.seats, dict(self.addons), version)


def moved_to_tier(
    catalog: Catalog,
    plan: Plan,
    tier_key: str,
    *,
    seats: int | None = None,
    addons: dict[str, int] | None = None,
) -> Plan:
    """The plan on another tier, at `catalog`'s version (the one in force: a tier change buys
    today's prices). Seats not given move into the new tier's range, add-ons not given keep
    only those the new tier sells; callers show the result, so nothing changes that the
    customer does not see."""
    tier = catalog.tiers.get(tier_key)
    if tier is not None:
        if seats is None:
            seats = min(max(plan.seats, tier.seats.included), tier.seats.max)
        if addons is None:
            addons = {k: q for k, q in plan.addons.items() if k in tier.addons}
    moved = plan.with_changes(tier=tier_key, seats=seats, addons=addons)
    return moved.at_version(catalog.version)


def priced_target(in_force: Catalog, current: Plan, target: Plan) -> Plan:
    """The target with the catalog version it is priced at. A tier change buys the version in
    force for new business (`in_force`): the customer picks a plan off today's price list. A
    change within the tier (seats, add-ons, interval) keeps the account's own version: buying
    more of what they have at the price they have (grandfathering), as a Stripe subscription
    item keeps its price when its quantity changes. A target that names a version explicitly
    keeps it (a catalog migration moves an account to a chosen version)."""
    if target.tier != current.tier:
        return target.at_version(in_force.version)
    if target.version:
        return target
    return target.at_version(current.version)


def plan_to_json(plan: Plan) -> dict[str, object]:
    """The plan as stored and signed (scheduled changes, offer tokens, upgrade responses)."""
    return {
        "tier": plan.tier,
        "interval": plan.interval.value,
        "seats": plan.seats,
        "addons": dict(sorted(plan.addons.items())),
        **({"version": plan.version} if plan.version else {}),
    }


def plan_from_json(document: dict[str, Any]) -> Plan:
    return Plan(
        tier=str(document["tier"]),
        interval=Interval(document["interval"]),
        seats=int(document["seats"]),
        addons={str(k): int(v) for k, v in document["addons"].items()},
        version=str(document.get("version", "")),
    )


@dataclass(frozen=True, slots=True)
class PlanLine:
    """One recurring line of a plan: a price (by lookup key) times a quantity, per interval."""

    key: str
    description: str
    lookup_key: str
    unit_amount: Money
    quantity: int

    @property
    def amount(self) -> Money:
        return self.unit_amount.times(self.quantity)


def pays(status: AccountStatus | str) -> bool:
    """Whether an account in this status pays, and so has MRR (active, or past due)."""
    return status in (AccountStatus.active, AccountStatus.past_due)


def validate_plan(catalog: Catalog, plan: Plan, *, prefix: str = "") -> None:
    """Raise ValidationFailed naming the field when the plan is not sellable by this catalog."""
    for problem in plan_problems(catalog, plan, prefix=prefix):
        raise problem


def plan_problems(catalog: Catalog, plan: Plan, *, prefix: str = "") -> Iterator[ValidationFailed]:
    """Every reason the plan is not sellable by this catalog, each naming its field; none when it
    is (an unknown tier hides the rest: nothing else can be checked against it). The plan is
    checked against its own catalog version."""
    catalog = catalog.at_version(plan.version)
    tier = catalog.tiers.get(plan.tier)
    if tier is None:
        yield ValidationFailed(
            f"unknown tier '{plan.tier}'", field=f"{prefix}tier", code="unknown_tier"
        )
        return
    if tier.self_serve and plan.interval not in tier.prices:
        yield ValidationFailed(
            f"tier '{plan.tier}' has no {plan.interval.value} price",
            field=f"{prefix}interval",
            code="interval_not_offered",
        )
    if not tier.seats.included <= plan.seats <= tier.seats.max:
        yield ValidationFailed(
            f"seats must be between {tier.seats.included} and {tier.seats.max} "
            f"on tier '{plan.tier}', got {plan.seats}",
            field=f"{prefix}seats",
            code="seats_out_of_range",
        )
    for addon_key, quantity in plan.addons.items():
        where = f"{prefix}addons.{addon_key}"
        addon = catalog.addons.get(addon_key)
        if addon is None:
            yield ValidationFailed(
                f"unknown add-on '{addon_key}'", field=where, code="unknown_addon"
            )
        elif addon_key not in tier.addons:
            yield ValidationFailed(
                f"add-on '{addon_key}' is not available on tier '{plan.tier}'",
                field=where,
                code="addon_not_allowed",
            )
        elif not 1 <= quantity <= addon.max_quantity:
            yield ValidationFailed(
                f"add-on '{addon_key}' quantity must be between 1 and {addon.max_quantity}",
                field=where,
                code="addon_quantity_out_of_range",
            )


def plan_lines(catalog: Catalog, plan: Plan) -> list[PlanLine]:
    """The recurring lines of a plan, in a stable order: base, seats, then add-ons by key.

    Sales-assisted tiers have no list price and so no lines here; their contract value is
    recorded by the people who sell it. Prices come from the plan's own catalog version.
    """
    catalog = catalog.at_version(plan.version)
    tier = catalog.tiers[plan.tier]
    tier_price = tier.prices.get(plan.interval)
    if tier_price is None:
        return []
    lines = [
        PlanLine(
            "base",
            f"{tier.name} ({tier.seats.included} seats included)",
            tier_price.base.lookup_key,
            catalog.money(tier_price.base.amount),
            1,
        )
    ]
    extra_seats = plan.seats - tier.seats.included
    if tier_price.seat is not None and extra_seats > 0:
        lines.append(
            PlanLine(
                "seats",
                f"{tier.name} additional seat",
                tier_price.seat.lookup_key,
                catalog.money(tier_price.seat.amount),
                extra_seats,
            )
        )
    for addon_key in sorted(plan.addons):
        quantity = plan.addons[addon_key]
        price = catalog.addons[addon_key].prices[plan.interval]
        lines.append(
            PlanLine(
                f"addon:{addon_key}",
                catalog.addons[addon_key].name,
                price.lookup_key,
                catalog.money(price.amount),
                quantity,
            )
        )
    return lines


def recurring_amount(catalog: Catalog, plan: Plan) -> Money:
    """What the plan bills every interval."""
    total = Money.zero(catalog.currency)
    for line in plan_lines(catalog, plan):
        total = total + line.amount
    return total
