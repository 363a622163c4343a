"""The offer funnel: impressions, conversions per engine and the activation window."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from service.domain.ledger.movements import OFFER_ENGINES, Engine
from service.domain.ledger.retention import ratio
from service.domain.ledger.values import require_int, require_non_negative


def in_activation_window(days_since_activation: int | None, window_days: int) -> bool:
    """Whether a moment falls in the post-activation window [0, window_days) days.

    None (milestone not reached yet) is outside the window.
    """
    if require_int(window_days, "window_days") < 1:
        raise ValueError("window_days must be at least 1")
    if days_since_activation is None:
        return False
    return 0 <= require_int(days_since_activation, "days_since_activation") < window_days


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferImpression:
    """One offer served to an account (one page load), whether the customer saw it (the frontend
    reported it displayed) and whether it was accepted as an upgrade."""

    engine: Engine
    offer_id: str
    seen: bool = False
    accepted: bool = False
    days_since_activation: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "engine", Engine(self.engine))
        if not isinstance(self.accepted, bool) or not isinstance(self.seen, bool):
            raise TypeError("seen and accepted must be bools")


@dataclass(frozen=True, slots=True, kw_only=True)
class FunnelRow:
    """One engine, in or out of the window: offers served (every one the API returned, per page
    load), seen (distinct offers a customer saw), accepted (seen offers taken) and conversion
    (accepted / seen: of what customers saw, not of what the API sent)."""

    engine: Engine
    in_window: bool
    served: int
    seen: int
    accepted: int
    conversion: Decimal | None


def funnel_row(
    engine: Engine, *, in_window: bool, served: int, seen: int, accepted: int
) -> FunnelRow:
    """A funnel row from counts, e.g. straight from a SQL GROUP BY."""
    require_non_negative(served, "served")
    require_non_negative(seen, "seen")
    if require_non_negative(accepted, "accepted") > seen:
        raise ValueError("accepted offers cannot exceed the offers seen")
    return FunnelRow(
        engine=Engine(engine),
        in_window=in_window,
        served=served,
        seen=seen,
        accepted=accepted,
        conversion=ratio(accepted, seen),
    )


def offer_funnel(impressions: Iterable[OfferImpression], *, window_days: int) -> list[FunnelRow]:
    """Conversion of the offers customers saw, per engine, in and out of the activation window.

    Served counts every impression; seen and accepted count distinct offers, so an offer served
    on ten page loads, seen and accepted counts 10 / 1 / 1. Every offer engine gets both rows, even
    empty ones, so dashboards have a stable shape; ordered by engine, inside-the-window first.
    """
    served = {(engine, inside): 0 for engine in OFFER_ENGINES for inside in (True, False)}
    seen: dict[tuple[Engine, bool], set[str]] = {key: set() for key in served}
    accepted: dict[tuple[Engine, bool], set[str]] = {key: set() for key in served}
    for impression in impressions:
        key = (
            impression.engine,
            in_activation_window(impression.days_since_activation, window_days),
        )
        served[key] += 1
        if impression.seen:
            seen[key].add(impression.offer_id)
            if impression.accepted:
                accepted[key].add(impression.offer_id)
    return [
        funnel_row(
            engine,
            in_window=inside,
            served=count,
            seen=len(seen[(engine, inside)]),
            accepted=len(accepted[(engine, inside)]),
        )
        for (engine, inside), count in served.items()
    ]


def median_days_to_first_expansion(expansions: Iterable[tuple[str, int]]) -> Decimal | None:
    """Median over accounts of the days from activation to their first expansion.

    Takes (account_id, days_since_activation) for every expansion; only each account's earliest
    counts. An even count averages the two middle values (so .5 can appear); None if empty.
    """
    first: dict[str, int] = {}
    for account_id, days in expansions:
        require_non_negative(days, "days_since_activation")
        if account_id not in first or days < first[account_id]:
            first[account_id] = days
    ordered = sorted(first.values())
    if not ordered:
        return None
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return Decimal(ordered[middle])
    return Decimal(ordered[middle - 1] + ordered[middle]) / 2
