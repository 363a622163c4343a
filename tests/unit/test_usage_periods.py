"""Usage periods and counters: month ends, leap days, UTC vs local offsets, billing periods."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from service.adapters.catalog_loader import load_catalog
from service.domain.periods import Period
from service.domain.usage import (
    LIFETIME,
    LIFETIME_START,
    BillingCycle,
    EventCheck,
    FeatureUsage,
    LimitBook,
    UsageAccount,
    UsageAction,
    UsageEvent,
    as_utc,
    build_snapshot,
    check_event,
    current_period_starts,
    fold_events,
    periods_of,
)
from tests.conftest import CATALOG_PATH

CATALOG = load_catalog(CATALOG_PATH)
NOW = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def cycle(start: datetime, months: int = 1, end: datetime | None = None) -> BillingCycle:
    from service.domain.periods import add_months

    return BillingCycle(start, end or add_months(start, months), months)


def make_event(
    index: int,
    feature: str,
    timestamp: datetime,
    quantity: int = 1,
    action: UsageAction = UsageAction.increment,
    account_id: str = "acme",
) -> UsageEvent:
    return UsageEvent(index, f"e{index}", account_id, feature, quantity, timestamp, action)


def period_of(feature: str, timestamp: datetime, account_cycle: BillingCycle) -> Period:
    [period] = periods_of(CATALOG, [make_event(0, feature, timestamp)], {"acme": account_cycle})
    return period


MONTHLY = cycle(utc(2026, 11, 10, 12))


@pytest.mark.parametrize(
    ("timestamp", "start", "end"),
    [
        (utc(2026, 11, 30, 23, 59, 59), utc(2026, 11, 1), utc(2026, 12, 1)),
        (utc(2026, 12, 1), utc(2026, 12, 1), utc(2027, 1, 1)),
        (utc(2026, 12, 31, 23, 59, 59, 999999), utc(2026, 12, 1), utc(2027, 1, 1)),
        (utc(2028, 2, 29, 12), utc(2028, 2, 1), utc(2028, 3, 1)),
        (utc(2027, 2, 28, 23, 59), utc(2027, 2, 1), utc(2027, 3, 1)),
    ],
)
def test_calendar_month_counters_break_at_utc_month_ends(
    timestamp: datetime, start: datetime, end: datetime
) -> None:
    assert period_of("api_calls", timestamp, MONTHLY) == Period(start, end)


def test_a_local_offset_counts_in_the_utc_month() -> None:
    # 00:30 on Dec 1 in Paris (UTC+1) is still November in UTC; 23:30 on Nov 30 in New York
    # (UTC-5) is already December.
    paris = datetime(2026, 12, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    new_york = datetime(2026, 11, 30, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert period_of("api_calls", as_utc(paris), MONTHLY).start == utc(2026, 11, 1)
    assert period_of("api_calls", as_utc(new_york), MONTHLY).start == utc(2026, 12, 1)
    assert period_of("api_calls", paris, MONTHLY).start == utc(2026, 11, 1)


def test_billing_period_features_reset_with_the_account_cycle() -> None:
    # automation_runs resets per billing period: Nov 10 12:00 -> Dec 10 12:00.
    assert period_of("automation_runs", utc(2026, 12, 10, 11, 59), MONTHLY) == Period(
        utc(2026, 11, 10, 12), utc(2026, 12, 10, 12)
    )
    assert period_of("automation_runs", utc(2026, 12, 10, 12), MONTHLY) == Period(
        utc(2026, 12, 10, 12), utc(2027, 1, 10, 12)
    )
    # A late event of the previous period counts there.
    assert period_of("automation_runs", utc(2026, 11, 1), MONTHLY) == Period(
        utc(2026, 10, 10, 12), utc(2026, 11, 10, 12)
    )


def test_billing_period_anchored_on_a_leap_day() -> None:
    yearly = cycle(utc(2028, 2, 29), months=12)
    assert period_of("automation_runs", utc(2029, 2, 28, 0, 0, 1), yearly) == Period(
        utc(2029, 2, 28), utc(2030, 2, 28)
    )
    assert period_of("automation_runs", utc(2029, 2, 27), yearly) == Period(
        utc(2028, 2, 29), utc(2029, 2, 28)
    )


def test_a_custom_current_period_does_not_overlap_the_next() -> None:
    short = cycle(utc(2026, 11, 10), end=utc(2026, 11, 20))
    assert period_of("automation_runs", utc(2026, 11, 19), short).end == utc(2026, 11, 20)
    assert period_of("automation_runs", utc(2026, 11, 21), short) == Period(
        utc(2026, 11, 20), utc(2026, 12, 20)
    )


def test_capacity_and_seats_count_over_the_lifetime() -> None:
    assert period_of("projects", utc(2026, 11, 10), MONTHLY) is LIFETIME
    assert period_of("seats", utc(2031, 1, 1), MONTHLY) is LIFETIME
    assert current_period_starts(CATALOG, MONTHLY, NOW) == {
        LIFETIME_START,
        utc(2026, 11, 1),
        utc(2026, 11, 10, 12),
    }


def test_increments_add_up_per_counter() -> None:
    events = [
        make_event(0, "api_calls", utc(2026, 11, 30, 23), 5),
        make_event(1, "api_calls", utc(2026, 12, 1, 1), 7),
        make_event(2, "api_calls", utc(2026, 11, 2), 3),
        make_event(3, "projects", utc(2026, 11, 2), 2),
    ]
    changes = fold_events(events, periods_of(CATALOG, events, {"acme": MONTHLY}))
    assert {(k[1], k[2]): c.delta for k, c in changes.items()} == {
        ("api_calls", utc(2026, 11, 1)): 8,
        ("api_calls", utc(2026, 12, 1)): 7,
        ("projects", LIFETIME_START): 2,
    }
    assert all(c.reading is None for c in changes.values())


def test_a_reading_covers_earlier_increments_and_adds_later_ones() -> None:
    events = [
        make_event(0, "seats", utc(2026, 11, 10, 9), 1),
        make_event(1, "seats", utc(2026, 11, 10, 10), 4, UsageAction.set),
        make_event(2, "seats", utc(2026, 11, 10, 11), 1),
        make_event(3, "seats", utc(2026, 11, 10, 8), 9, UsageAction.set),  # older reading
    ]
    [change] = fold_events(events, periods_of(CATALOG, events, {"acme": MONTHLY})).values()
    assert change.delta == 2  # every increment, for a counter whose stored reading is newer
    assert (change.reading, change.reading_at) == (5, utc(2026, 11, 10, 10))


def test_readings_at_the_same_time_follow_batch_order() -> None:
    at = utc(2026, 11, 10, 10)
    events = [
        make_event(0, "seats", at, 3, UsageAction.set),
        make_event(1, "seats", at, 2, UsageAction.set),
    ]
    [change] = fold_events(events, periods_of(CATALOG, events, {"acme": MONTHLY})).values()
    assert change.reading == 2


@pytest.mark.parametrize(
    ("feature", "quantity", "timestamp", "field", "code"),
    [
        ("nope", 1, NOW, "feature", "unknown_feature"),
        ("sso", 1, NOW, "feature", "feature_not_countable"),
        ("api_calls", -1, NOW, "quantity", "negative_quantity"),
        ("api_calls", 1, NOW + timedelta(minutes=5, seconds=1), "timestamp", "timestamp_in_future"),
        ("api_calls", 1, utc(1999, 12, 31, 23, 59), "timestamp", "timestamp_out_of_range"),
    ],
)
def test_rules_name_the_field(
    feature: str, quantity: int, timestamp: datetime, field: str, code: str
) -> None:
    rejection = check_event(
        CATALOG, make_event(3, feature, timestamp, quantity), {"acme": object()}, NOW
    )
    assert rejection is not None
    assert (rejection.index, rejection.field, rejection.code) == (3, field, code)


def test_rules_accept_five_minutes_of_skew_and_know_the_accounts() -> None:
    ok = make_event(0, "api_calls", NOW + timedelta(minutes=5))
    assert check_event(CATALOG, ok, {"acme": object()}, NOW) is None
    unknown = check_event(CATALOG, ok, {}, NOW)
    assert unknown is not None and unknown.code == "unknown_account"


def test_extreme_offsets_are_rejected_not_crashed() -> None:
    far_past = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    assert as_utc(far_past) is far_past  # no UTC equivalent: left for the rules
    rejection = check_event(CATALOG, make_event(0, "api_calls", far_past), {"acme": 1}, NOW)
    assert rejection is not None and rejection.code == "timestamp_out_of_range"


def test_utilization_is_floored_and_only_for_numeric_limits() -> None:
    assert FeatureUsage("api_calls", "metered", 7_999, 10_000, None).utilization_percent == 79
    assert FeatureUsage("api_calls", "metered", 8_000, 10_000, None).utilization_percent == 80
    assert FeatureUsage("api_calls", "metered", 25_000, 10_000, None).utilization_percent == 250
    assert FeatureUsage("projects", "capacity", 5, None, None).utilization_percent is None
    assert FeatureUsage("projects", "capacity", 5, 0, None).utilization_percent is None
    assert FeatureUsage("sso", "boolean", 0, True, None).utilization_percent is None


def test_snapshot_applies_add_on_grants_and_reports_seats() -> None:
    account = UsageAccount("acme", "growth", 7, {"api_pack": 2, "projects_pack": 1}, MONTHLY)
    counters = {
        ("api_calls", utc(2026, 11, 1)): 150_000,
        ("api_calls", utc(2026, 10, 1)): 999_999,  # last month: not this snapshot's
        ("projects", LIFETIME_START): 60,
        ("seats", LIFETIME_START): 6,
    }
    features = build_snapshot(CATALOG, account, counters, NOW).features
    assert features["api_calls"].limit == 300_000  # 100,000 + 2 packs × 100,000
    assert features["api_calls"].used == 150_000
    assert features["api_calls"].period == Period(utc(2026, 11, 1), utc(2026, 12, 1))
    assert features["projects"].limit == 75 and features["projects"].utilization_percent == 80
    assert features["automation_runs"].used == 0
    assert features["audit_log"].limit is False and features["audit_log"].kind == "boolean"
    seats = features["seats"]
    assert (seats.kind, seats.used, seats.limit, seats.utilization_percent) == ("seats", 6, 7, 85)


def test_unlimited_and_retired_plans() -> None:
    business = UsageAccount("acme", "business", 12, {}, MONTHLY)
    features = build_snapshot(CATALOG, business, {}, NOW).features
    assert features["projects"].limit is None and features["sso"].limit is True
    retired = LimitBook(CATALOG).limits("platinum", {"api_pack": 1})
    assert retired == {}
    assert LimitBook(CATALOG).limits("growth", {"gone": 1})["api_calls"] == 100_000


def test_the_batch_check_agrees_with_check_event_on_every_rule() -> None:
    known = {"acme": object()}
    events = [
        make_event(0, "api_calls", NOW),
        make_event(1, "api_calls", NOW, account_id="ghost"),
        make_event(2, "nope", NOW),
        make_event(3, "sso", NOW),  # on/off
        make_event(4, "api_calls", NOW, quantity=-1),
        make_event(5, "seats", NOW, quantity=-1, action=UsageAction.set),
        make_event(6, "api_calls", NOW + timedelta(minutes=5)),  # at the tolerance: fine
        make_event(7, "api_calls", NOW + timedelta(minutes=5, microseconds=1)),
        make_event(8, "api_calls", utc(2000, 1, 1)),  # the earliest moment: fine
        make_event(9, "api_calls", utc(1999, 12, 31, 23, 59, 59)),
        make_event(10, "seats", NOW, quantity=0, action=UsageAction.set),
        make_event(11, "api_calls", datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))),
    ]
    check = EventCheck(CATALOG, known, NOW)
    assert [check(e) for e in events] == [check_event(CATALOG, e, known, NOW) for e in events]
    assert [check(e) is None for e in events] == [
        True, False, False, False, False, False, True, False, True, False, True, False
    ]  # fmt: skip
