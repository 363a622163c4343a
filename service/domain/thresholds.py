"""Threshold crossings, expansion readiness and the sales motion a signal is routed to."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from service.domain.catalog import Catalog, Threshold, Timing
from service.domain.ledger import Motion
from service.domain.periods import Period
from service.domain.usage import FeatureUsage, UsageSnapshot


class Reason(StrEnum):
    """Stable reason codes; a feature or milestone follows after a colon (`at_limit:seats`)."""

    at_limit = "at_limit"
    near_limit = "near_limit"
    value_workflow = "value_workflow"
    all_value_workflows = "all_value_workflows"
    in_activation_window = "in_activation_window"
    activation_window_closed = "activation_window_closed"
    not_activated = "not_activated"


class CrossingCandidate(NamedTuple):
    """A threshold the usage has reached; recorded once per (account, threshold, period).

    NamedTuples, this and Crossing: a first sweep builds tens of thousands, 3× cheaper.
    """

    account_id: str
    threshold_key: str
    feature: str
    level: str
    at_percent: int
    used: int
    limit: int
    period: Period
    motion: Motion | None = None  # who acts; None: by the account's tier and ACV (motion_for)


class Crossing(NamedTuple):
    """A recorded crossing: the signal, with the values that caused it."""

    id: str
    account_id: str
    threshold_key: str
    feature: str
    level: str
    at_percent: int
    used: int
    limit: int
    period_start: datetime
    period_end: datetime
    recorded_at: datetime
    motion: str
    acv_minor: int = 0  # annual contract value when recorded, minor units
    currency: str = ""
    readiness_score: int = 0  # readiness when recorded, and its reasons
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Readiness:
    score: int
    reasons: tuple[str, ...]
    activated_at: datetime | None
    days_since_activation: int | None
    in_window: bool


@dataclass(frozen=True, slots=True)
class SignalSummary:
    crossings: tuple[Crossing, ...]
    score: int
    reasons: tuple[str, ...]
    activated_at: datetime | None
    days_since_activation: int | None
    in_window: bool
    motion: str  # self_serve | cs_assisted | sales_assisted


@dataclass(frozen=True, slots=True)
class Evaluation:
    candidates: tuple[CrossingCandidate, ...]
    readiness: Readiness
    motion: Motion


def thresholds_by_feature(catalog: Catalog) -> dict[str, tuple[Threshold, ...]]:
    """The catalog's thresholds per feature, lowest first (so a check can stop early)."""
    grouped: dict[str, list[Threshold]] = {}
    for threshold in catalog.thresholds:
        grouped.setdefault(threshold.feature, []).append(threshold)
    return {f: tuple(sorted(ts, key=lambda t: t.at_percent)) for f, ts in grouped.items()}


def is_crossed(used: int, limit: int | bool | None, at_percent: int) -> bool:
    """used / limit >= at_percent / 100, in exact integers; unlimited and zero never cross."""
    if limit is None or isinstance(limit, bool) or limit <= 0:
        return False
    return used * 100 >= at_percent * limit


def crossed_thresholds(
    thresholds: Sequence[Threshold], used: int, limit: int | bool | None
) -> list[Threshold]:
    """The thresholds (sorted lowest first) that `used` of `limit` has reached."""
    if limit is None or isinstance(limit, bool) or limit <= 0:
        return []
    scaled = used * 100
    reached = []
    for threshold in thresholds:
        if scaled < threshold.at_percent * limit:
            break
        reached.append(threshold)
    return reached


def candidates_for(
    account_id: str,
    usages: Iterable[FeatureUsage],
    thresholds: Mapping[str, tuple[Threshold, ...]],
    signal_period: Period,
) -> list[CrossingCandidate]:
    """Crossings the usages show. Lifetime counters signal once per `signal_period`."""
    found = []
    for usage in usages:
        for threshold in crossed_thresholds(
            thresholds.get(usage.feature, ()), usage.used, usage.limit
        ):
            assert isinstance(usage.limit, int)
            found.append(
                CrossingCandidate(
                    account_id=account_id,
                    threshold_key=threshold.key,
                    feature=usage.feature,
                    level=threshold.level,
                    at_percent=threshold.at_percent,
                    used=usage.used,
                    limit=usage.limit,
                    period=usage.period or signal_period,
                )
            )
    return found


# A customer asked to talk to sales about a tier (the pricing table's "Talk to sales"): a signal
# like a crossing, recorded once per account, tier and billing period, routed to sales.
SALES_REQUEST_LEVEL = "requested"
_SALES_REQUEST_KEY = "sales_request."


def sales_request(account_id: str, tier_key: str, period: Period) -> CrossingCandidate:
    """The signal of a customer asking sales about `tier_key` during `period`."""
    return CrossingCandidate(
        account_id=account_id,
        threshold_key=f"{_SALES_REQUEST_KEY}{tier_key}",
        feature="tier",
        level=SALES_REQUEST_LEVEL,
        at_percent=0,
        used=0,
        limit=0,
        period=period,
        motion=Motion.SALES_ASSISTED,
    )


def is_sales_request(crossing: Crossing | CrossingCandidate) -> bool:
    return crossing.level == SALES_REQUEST_LEVEL and crossing.threshold_key.startswith(
        _SALES_REQUEST_KEY
    )


def requested_tier(crossing: Crossing) -> str | None:
    """The tier a sales request asks about (None for a threshold crossing)."""
    if not is_sales_request(crossing):
        return None
    return crossing.threshold_key.removeprefix(_SALES_REQUEST_KEY)


def has_self_serve_upgrade(catalog: Catalog, tier_key: str) -> bool:
    tier = catalog.tiers.get(tier_key)  # a tier the version in force no longer sells: none
    return tier is not None and any(path.timing is Timing.immediate for path in tier.upgrades)


def motion_for(catalog: Catalog, tier_key: str, acv_minor: int) -> Motion:
    """Who should act on a signal: the product alone, customer success, or sales.

    A tier with no self-serve way up can only grow through a conversation, whatever it pays.
    """
    bands = catalog.signals.acv_bands
    if tier_key not in catalog.tiers or not has_self_serve_upgrade(catalog, tier_key):
        return Motion.SALES_ASSISTED
    if acv_minor >= bands.sales_assisted_from:
        return Motion.SALES_ASSISTED
    if acv_minor >= bands.cs_assisted_from:
        return Motion.CS_ASSISTED
    return Motion.SELF_SERVE


def readiness(
    catalog: Catalog,
    snapshot: UsageSnapshot,
    milestones: Mapping[str, datetime],
    now: datetime,
    by_feature: Mapping[str, tuple[Threshold, ...]] | None = None,
) -> Readiness:
    """A 0–100 score of how ready the account is to expand, and the reasons behind it.

    score = floor(100 × Σ weight × factor / Σ weight), where the factors are the highest limit
    utilization (capped at 100 %), the share of value workflows completed, and 1 inside the
    post-activation window. A catalog with no value workflows leaves their weight out.
    `by_feature` is thresholds_by_feature(catalog), for callers that evaluate many accounts.
    """
    rules = catalog.signals
    weights = rules.readiness_weights
    if by_feature is None:
        by_feature = thresholds_by_feature(catalog)
    reasons: list[str] = []

    utilization = 0
    ranked = sorted(
        (u for u in snapshot.features.values() if u.utilization_percent is not None),
        key=lambda u: (-(u.utilization_percent or 0), u.feature),
    )
    for usage in ranked:
        percent = usage.utilization_percent or 0
        utilization = max(utilization, min(percent, 100))
        reached = crossed_thresholds(by_feature.get(usage.feature, ()), usage.used, usage.limit)
        if reached:
            top = Reason.at_limit if reached[-1].level == "limit" else Reason.near_limit
            reasons.append(f"{top.value}:{usage.feature}")

    workflows = rules.value_workflows
    completed = [name for name in workflows if name in milestones]
    reasons.extend(f"{Reason.value_workflow.value}:{name}" for name in completed)
    if workflows and len(completed) == len(workflows):
        reasons.append(Reason.all_value_workflows.value)

    activated_at = milestones.get(rules.activation_milestone)
    days_since: int | None = None
    in_window = False
    if activated_at is None:
        reasons.append(Reason.not_activated.value)
    else:
        elapsed = max(now - activated_at, timedelta(0))
        days_since = elapsed.days
        in_window = elapsed < timedelta(days=rules.post_activation_window_days)
        window_reason = (
            Reason.in_activation_window if in_window else Reason.activation_window_closed
        )
        reasons.append(window_reason.value)

    # Exact integers over the common denominator 100 × (number of workflows, or 1).
    shares = len(workflows) or 1
    weighted = weights.utilization * utilization * shares
    total_weight = weights.utilization + weights.activation_window
    if workflows:
        weighted += weights.value_workflows * len(completed) * 100
        total_weight += weights.value_workflows
    if in_window:
        weighted += weights.activation_window * 100 * shares
    score = weighted * 100 // (100 * shares * total_weight) if total_weight else 0
    return Readiness(score, tuple(reasons), activated_at, days_since, in_window)


def evaluate(
    catalog: Catalog,
    snapshot: UsageSnapshot,
    milestones: Mapping[str, datetime],
    *,
    tier_key: str,
    acv_minor: int,
    signal_period: Period,
    now: datetime,
) -> Evaluation:
    """Everything the signals know about one account: crossings, readiness and motion."""
    candidates = candidates_for(
        snapshot.account_id,
        snapshot.features.values(),
        thresholds_by_feature(catalog),
        signal_period,
    )
    return Evaluation(
        tuple(candidates),
        readiness(catalog, snapshot, milestones, now),
        motion_for(catalog, tier_key, acv_minor),
    )


def summarize(
    crossings: Sequence[Crossing], readiness_now: Readiness, motion: Motion
) -> SignalSummary:
    return SignalSummary(
        crossings=tuple(crossings),
        score=readiness_now.score,
        reasons=readiness_now.reasons,
        activated_at=readiness_now.activated_at,
        days_since_activation=readiness_now.days_since_activation,
        in_window=readiness_now.in_window,
        motion=motion.value,
    )
