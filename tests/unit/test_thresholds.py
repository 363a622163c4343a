"""Threshold crossings in exact integers, readiness with its reasons, and the sales motion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.adapters.catalog_loader import load_catalog
from service.domain.catalog import AcvBands, Catalog, ReadinessWeights
from service.domain.ledger import Motion
from service.domain.periods import Period
from service.domain.thresholds import (
    candidates_for,
    crossed_thresholds,
    evaluate,
    is_crossed,
    motion_for,
    readiness,
    thresholds_by_feature,
)
from service.domain.usage import (
    BillingCycle,
    FeatureUsage,
    UsageAccount,
    UsageSnapshot,
    build_snapshot,
)
from tests.conftest import CATALOG_PATH

CATALOG = load_catalog(CATALOG_PATH)
NOW = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
NOVEMBER = Period(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
BILLING = Period(datetime(2026, 11, 5, tzinfo=UTC), datetime(2026, 12, 5, tzinfo=UTC))
LIFETIME_START = datetime(1970, 1, 1, tzinfo=UTC)


def with_signals(catalog: Catalog, **changes: object) -> Catalog:
    return catalog.model_copy(update={"signals": catalog.signals.model_copy(update=changes)})


@pytest.mark.parametrize(
    ("used", "limit", "at_percent", "crossed"),
    [
        (7_999, 10_000, 80, False),
        (8_000, 10_000, 80, True),
        (2, 3, 67, False),  # 66.67 %: a float would say so too; 2/3 vs 0.67 is where they slip
        (201, 300, 67, True),
        (17, 20, 85, True),  # 85.0 % exactly
        (16, 19, 85, False),  # 84.2 %
        (3, 3, 100, True),
        (10**12, None, 80, False),  # unlimited never crosses
        (5, 0, 80, False),  # not included: nothing to measure against
        (1, True, 80, False),
    ],
)
def test_crossing_is_exact_integer_math(
    used: int, limit: int | bool | None, at_percent: int, crossed: bool
) -> None:
    assert is_crossed(used, limit, at_percent) is crossed


def test_crossed_thresholds_lowest_first() -> None:
    seats = thresholds_by_feature(CATALOG)["seats"]
    assert [t.key for t in seats] == ["seats_high", "seats_full"]
    assert [t.key for t in crossed_thresholds(seats, 9, 10)] == ["seats_high"]
    assert [t.key for t in crossed_thresholds(seats, 10, 10)] == ["seats_high", "seats_full"]
    assert crossed_thresholds(seats, 8, 10) == []


def test_candidates_carry_the_values_and_the_period() -> None:
    usages = [
        FeatureUsage("api_calls", "metered", 8_500, 10_000, NOVEMBER),
        FeatureUsage("projects", "capacity", 10, 10, None),
        FeatureUsage("automation_runs", "metered", 100, 500, BILLING),
    ]
    found = candidates_for("acme", usages, thresholds_by_feature(CATALOG), BILLING)
    assert [(c.threshold_key, c.used, c.limit, c.at_percent, c.period) for c in found] == [
        ("api_calls_warn", 8_500, 10_000, 80, NOVEMBER),
        # A lifetime counter signals once per billing period.
        ("projects_warn", 10, 10, 80, BILLING),
        ("projects_limit", 10, 10, 100, BILLING),
    ]
    assert {c.level for c in found} == {"warn", "limit"}


@pytest.mark.parametrize(
    ("tier", "acv_minor", "motion"),
    [
        ("starter", 0, Motion.SELF_SERVE),
        ("growth", 2_999_999, Motion.SELF_SERVE),
        ("growth", 3_000_000, Motion.CS_ASSISTED),
        ("growth", 9_999_999, Motion.CS_ASSISTED),
        ("growth", 10_000_000, Motion.SALES_ASSISTED),
        # Business and Enterprise have no self-serve upgrade above them: people sell that.
        ("business", 0, Motion.SALES_ASSISTED),
        ("enterprise", 0, Motion.SALES_ASSISTED),
        ("retired_tier", 0, Motion.SALES_ASSISTED),
    ],
)
def test_motion_from_acv_bands_and_upgrade_paths(tier: str, acv_minor: int, motion: Motion) -> None:
    assert motion_for(CATALOG, tier, acv_minor) is motion


def test_acv_bands_come_from_the_catalog() -> None:
    catalog = with_signals(
        CATALOG, acv_bands=AcvBands(cs_assisted_from=100, sales_assisted_from=200)
    )
    assert motion_for(catalog, "starter", 150) is Motion.CS_ASSISTED
    assert motion_for(catalog, "starter", 200) is Motion.SALES_ASSISTED


def snapshot(
    *, api_calls: int = 0, seats_active: int = 0, seats: int = 3, projects: int = 0
) -> UsageSnapshot:
    account = UsageAccount(
        "acme",
        "starter",
        seats,
        {},
        BillingCycle(BILLING.start, BILLING.end, 1),
    )
    counters = {
        ("api_calls", NOVEMBER.start): api_calls,
        ("projects", LIFETIME_START): projects,
        ("seats", LIFETIME_START): seats_active,
    }
    return build_snapshot(CATALOG, account, counters, NOW)


def test_readiness_of_a_new_account_is_zero() -> None:
    result = readiness(CATALOG, snapshot(), {}, NOW)
    assert result.score == 0
    assert result.reasons == ("not_activated",)
    assert (result.activated_at, result.days_since_activation, result.in_window) == (
        None,
        None,
        False,
    )


def test_readiness_in_the_window_with_workflows_and_usage() -> None:
    # Starter: api_calls 9,000 of 10,000 (90 %), seats 3 of 3 (100 %), two of three workflows,
    # activated 12 days ago: 50 × 100 % + 30 × 2/3 + 20 × 1 = 90.
    activated = NOW - timedelta(days=12, hours=3)
    milestones = {
        "first_project_shipped": activated,
        "invited_team": NOW - timedelta(days=11),
        "automation_enabled": NOW - timedelta(days=2),
    }
    result = readiness(
        CATALOG,
        snapshot(api_calls=9_000, seats_active=3),
        milestones,
        NOW,
    )
    assert result.score == 90
    assert result.reasons == (
        "at_limit:seats",
        "near_limit:api_calls",
        "value_workflow:invited_team",
        "value_workflow:automation_enabled",
        "in_activation_window",
    )
    assert (result.activated_at, result.days_since_activation, result.in_window) == (
        activated,
        12,
        True,
    )


def test_readiness_after_the_window_with_every_workflow() -> None:
    # 50 × 45 % + 30 × 3/3 + 20 × 0 = 52.5, floored.
    milestones = {
        name: NOW - timedelta(days=40)
        for name in ("first_project_shipped", "invited_team", "connected_integration")
    } | {"automation_enabled": NOW - timedelta(days=31)}
    result = readiness(CATALOG, snapshot(api_calls=4_500), milestones, NOW)
    assert result.score == 52
    assert result.reasons == (
        "value_workflow:invited_team",
        "value_workflow:connected_integration",
        "value_workflow:automation_enabled",
        "all_value_workflows",
        "activation_window_closed",
    )
    assert result.days_since_activation == 40 and result.in_window is False


def test_the_window_ends_exactly_after_its_days() -> None:
    just_in = {"first_project_shipped": NOW - timedelta(days=30) + timedelta(seconds=1)}
    just_out = {"first_project_shipped": NOW - timedelta(days=30)}
    assert readiness(CATALOG, snapshot(), just_in, NOW).in_window is True
    assert readiness(CATALOG, snapshot(), just_out, NOW).in_window is False


def test_utilization_counts_at_most_full_and_weights_come_from_the_catalog() -> None:
    over = snapshot(api_calls=30_000)  # 300 %
    assert readiness(CATALOG, over, {}, NOW).score == 50
    only_usage = with_signals(
        CATALOG,
        readiness_weights=ReadinessWeights(utilization=100, value_workflows=0, activation_window=0),
    )
    assert readiness(only_usage, snapshot(api_calls=4_321), {}, NOW).score == 43
    # No value workflows configured: their weight drops out (50 × 60 % + 20 × 0) / 70 = 42.86.
    no_workflows = with_signals(CATALOG, value_workflows=[])
    assert readiness(no_workflows, snapshot(api_calls=6_000), {}, NOW).score == 42


def test_evaluate_combines_crossings_readiness_and_motion() -> None:
    result = evaluate(
        CATALOG,
        snapshot(api_calls=10_000, seats_active=2),
        {},
        tier_key="starter",
        acv_minor=34_800,
        signal_period=BILLING,
        now=NOW,
    )
    assert [c.threshold_key for c in result.candidates] == ["api_calls_warn", "api_calls_limit"]
    assert result.motion is Motion.SELF_SERVE
    assert result.readiness.score == 50
