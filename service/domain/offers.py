"""Rank the next step for an account: seat expansion, tier upsell, add-on, or a talk with sales."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol

from service.domain.accounts import Plan, moved_to_tier
from service.domain.catalog import SEATS_FEATURE, AddOnKind, Catalog, FeatureKind, Timing


class OfferEngine(StrEnum):
    seat = "seat"
    upsell = "upsell"
    addon = "addon"
    sales_assisted = "sales_assisted"


class FeatureUsageView(Protocol):
    @property
    def used(self) -> int: ...
    @property
    def limit(self) -> int | bool | None: ...


class PeriodView(Protocol):
    @property
    def end(self) -> datetime: ...


def inputs_change_at(
    periods: Iterable[PeriodView | None], activated_at: datetime | None, now: datetime
) -> datetime:
    """The first moment after `now` at which an account's offer inputs read at `now` change by
    time alone (datetime.max when none does): the end of a usage counter's period (`periods`:
    each feature's, None for lifetime and on/off ones), where that counter starts again at 0;
    the next day since activation, where days_since_activation (and at the window's last day
    the activation window) moves on. A cached page is kept no longer than that."""
    until = datetime.max.replace(tzinfo=UTC)
    for period in periods:
        if period is not None and period.end < until:
            until = period.end
    if activated_at is not None:
        days = max(now - activated_at, timedelta(0)).days
        until = min(until, activated_at + timedelta(days=days + 1))
    return until


class CrossingView(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def feature(self) -> str: ...
    @property
    def level(self) -> str: ...


class SignalsView(Protocol):
    @property
    def crossings(self) -> Sequence[CrossingView]: ...
    @property
    def score(self) -> int: ...
    @property
    def in_window(self) -> bool: ...
    @property
    def motion(self) -> str: ...


# A seat offer sizes the team so that it sits at this utilization after the purchase.
SEAT_TARGET_UTILIZATION_PERCENT = 75
# How much an account inside its post-activation window is favoured: the best moment to expand.
WINDOW_BOOST = 15
# Feature unlocks are offered only to accounts showing this much readiness, never cold.
UNLOCK_MIN_READINESS = 50


@dataclass(frozen=True, slots=True)
class OfferCandidate:
    """An unpriced offer: what to change and why. Priced and signed by the offers service."""

    engine: OfferEngine
    target: Plan | None  # None for a sales-assisted offer: there is nothing to buy alone
    target_tier: str
    reasons: tuple[str, ...]
    signal_ids: tuple[str, ...]
    strength: int  # 0..100 from the signal behind it, before the window boost

    def score(self, in_window: bool) -> int:
        return self.strength + (WINDOW_BOOST if in_window else 0)


def _utilization(usage: FeatureUsageView | None) -> int | None:
    if usage is None or isinstance(usage.limit, bool) or not usage.limit:
        return None
    return usage.used * 100 // usage.limit


def _warn_percent(catalog: Catalog, feature: str) -> int | None:
    levels = [t.at_percent for t in catalog.thresholds if t.feature == feature]
    return min(levels) if levels else None


def _signal_ids(signals: SignalsView, feature: str) -> tuple[str, ...]:
    return tuple(c.id for c in signals.crossings if c.feature == feature)


def _hit(signals: SignalsView, feature: str) -> bool:
    return any(c.feature == feature and c.level == "limit" for c in signals.crossings)


def _self_serve_upgrades(catalog: Catalog, plan: Plan) -> list[str]:
    """Immediate, self-serve upgrade targets of the plan's tier, cheapest (lowest rank) first.
    The paths are the version in force's (`catalog`), or the plan's own version's when its tier
    is no longer sold; a target must be sold, self-serve, by the version in force."""
    source = catalog if plan.tier in catalog.tiers else catalog.at_version(plan.version)
    paths = [
        p.to
        for p in source.tiers[plan.tier].upgrades
        if p.timing is Timing.immediate and p.to in catalog.tiers and catalog.tiers[p.to].self_serve
    ]
    return sorted(paths, key=lambda key: catalog.tiers[key].rank)


def _raises(catalog: Catalog, plan: Plan, to_tier: str, feature: str) -> bool:
    own = catalog.at_version(plan.version)
    if feature == SEATS_FEATURE:
        return catalog.tiers[to_tier].seats.max > own.tiers[plan.tier].seats.max
    kept = {k: q for k, q in plan.addons.items() if k in catalog.tiers[to_tier].addons}
    now = own.limit(plan.tier, feature, plan.addons)
    then = catalog.limit(to_tier, feature, kept)
    return then is None or (now is not None and int(then) > int(now))


def candidates(
    catalog: Catalog, plan: Plan, usage: Mapping[str, FeatureUsageView], signals: SignalsView
) -> list[OfferCandidate]:
    """Every offer the account's state and signals justify, strongest first (see `rank`).

    `catalog` is the version in force: step ups are priced and sized by it. Seat and add-on
    offers stay on the plan's own version (grandfathered prices; see priced_target)."""
    found: list[OfferCandidate] = []
    own = catalog.at_version(plan.version)
    tier = own.tiers[plan.tier]
    step_ups = _self_serve_upgrades(catalog, plan)
    pressured: list[tuple[str, int]] = []
    for feature, feature_usage in usage.items():
        percent = _utilization(feature_usage)
        warn = _warn_percent(catalog, feature)
        if percent is not None and warn is not None and percent >= warn:
            pressured.append((feature, 100 if _hit(signals, feature) else percent))

    # Under seat pressure, the fewest seats that bring utilization down to the target (ceiling
    # division): the seat offer adds them, and any step up to a bigger tier includes them, so a
    # customer at 100% is not left at 100% (within the new tier's range).
    wanted: int | None = None
    if any(feature == SEATS_FEATURE for feature, _ in pressured):
        active = usage[SEATS_FEATURE].used
        wanted = max(plan.seats + 1, -(-active * 100 // SEAT_TARGET_UTILIZATION_PERCENT))

    for feature, strength in pressured:
        reason = f"{feature}_at_{min(_utilization(usage[feature]) or 0, 999)}_percent"
        ids = _signal_ids(signals, feature)
        if feature == SEATS_FEATURE:
            assert wanted is not None
            seats = min(tier.seats.max, wanted)
            if seats > plan.seats:
                found.append(
                    OfferCandidate(
                        OfferEngine.seat,
                        plan.with_changes(seats=seats),
                        plan.tier,
                        (reason,),
                        ids,
                        min(strength, 100),
                    )
                )
        else:
            for addon_key in tier.addons:
                addon = own.addons[addon_key]
                quantity = plan.addons.get(addon_key, 0)
                if (
                    addon.kind is AddOnKind.usage_pack
                    and feature in addon.grants
                    and quantity < addon.max_quantity
                ):
                    found.append(
                        OfferCandidate(
                            OfferEngine.addon,
                            plan.with_changes(addons={**plan.addons, addon_key: quantity + 1}),
                            plan.tier,
                            (reason,),
                            ids,
                            min(strength, 100),
                        )
                    )
        upsell_to = next((t for t in step_ups if _raises(catalog, plan, t, feature)), None)
        if upsell_to is not None:
            found.append(
                OfferCandidate(
                    OfferEngine.upsell,
                    moved_to_tier(
                        catalog, plan, upsell_to, seats=_sized(catalog, upsell_to, wanted)
                    ),
                    upsell_to,
                    (reason, f"{upsell_to}_raises_{feature}"),
                    ids,
                    min(strength, 100),
                )
            )

    ready = signals.in_window or signals.score >= UNLOCK_MIN_READINESS
    for next_tier in step_ups if ready else []:
        unlocked = [
            key
            for key, feature in catalog.features.items()
            if feature.kind is FeatureKind.boolean
            and not own.limit(plan.tier, key, plan.addons)
            and catalog.limit(next_tier, key, {})
        ]
        if unlocked:
            # The cheapest step up that unlocks something, offered on readiness alone.
            found.append(
                OfferCandidate(
                    OfferEngine.upsell,
                    moved_to_tier(
                        catalog, plan, next_tier, seats=_sized(catalog, next_tier, wanted)
                    ),
                    next_tier,
                    tuple(f"{next_tier}_unlocks_{key}" for key in unlocked),
                    (),
                    30,
                )
            )
            break

    sales_paths = [p.to for p in tier.upgrades if p.timing is Timing.sales_assisted]
    if sales_paths and (signals.motion == "sales_assisted" or (not step_ups and pressured)):
        reasons = ["high_contract_value"] if signals.motion == "sales_assisted" else []
        if not step_ups:
            reasons.append("no_self_serve_step_up")
        found.append(
            OfferCandidate(
                OfferEngine.sales_assisted,
                None,
                sales_paths[0],
                tuple(reasons),
                tuple(c.id for c in signals.crossings),
                90 if signals.motion == "sales_assisted" else 60,
            )
        )
    return _dedupe(found)


def _sized(catalog: Catalog, tier_key: str, wanted: int | None) -> int | None:
    """The seats of a step up to `tier_key`: `wanted` (seat pressure) within the tier's range;
    None (no pressure): moved_to_tier's default."""
    if wanted is None:
        return None
    seats = catalog.tiers[tier_key].seats
    return min(seats.max, max(wanted, seats.included))


def _dedupe(found: list[OfferCandidate]) -> list[OfferCandidate]:
    """One offer per target: the reasons and signals of duplicates are merged into the strongest."""
    merged: dict[tuple[object, ...], OfferCandidate] = {}
    for offer in found:
        target = offer.target
        plan_key = (
            (target.tier, target.interval, target.seats, tuple(sorted(target.addons.items())))
            if target
            else None
        )
        key = (offer.engine.value, offer.target_tier, plan_key)
        seen = merged.get(key)
        if seen is None:
            merged[key] = offer
            continue
        merged[key] = OfferCandidate(
            offer.engine,
            offer.target,
            offer.target_tier,
            tuple(dict.fromkeys((*seen.reasons, *offer.reasons))),
            tuple(dict.fromkeys((*seen.signal_ids, *offer.signal_ids))),
            max(seen.strength, offer.strength),
        )
    return list(merged.values())


def rank(
    priced: Sequence[tuple[OfferCandidate, int | None]], in_window: bool
) -> list[tuple[OfferCandidate, int | None]]:
    """Strongest signal first; among equals, the smallest MRR step (None: unpriced, last) first.

    The smallest step that relieves the customer's limit is the honest first offer; the bigger
    step is still shown right behind it.
    """
    return sorted(
        priced,
        key=lambda pair: (
            -pair[0].score(in_window),
            pair[1] if pair[1] is not None else 1 << 62,
            pair[0].engine.value,
        ),
    )
